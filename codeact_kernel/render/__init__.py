"""What the host may show of the sandbox's output: MIME bundles through the output
firewall (``firewall``) and text made inert for terminals and Markdown (``escape``).
Every host-side renderer goes through one of them: the ``%%agent`` display, the terminal,
``codeact show`` and the HTML export, and the review kernel's relay."""
