"""The run as a notebook: a step as the trace keeps it (``record``), writing and loading
traces (``notebook``) and reading them as a reviewer (``report``)."""
