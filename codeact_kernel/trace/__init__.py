"""The run as a notebook: writing and loading traces (``notebook``), re-running them
(``replay``) and reading them as a reviewer (``report``)."""
