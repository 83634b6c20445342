"""Models: any provider through litellm (``llm``), and the embedded local model
(``local``) run under a supervised server process (``supervise``)."""
