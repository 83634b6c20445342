"""Tasks the agent was never tuned on: eight domains of host tools, unlike local_tasks.py.

Each module holds one domain: its deterministic, offline data, its ``@tool``-ready functions
(typed, with docstrings) and its six tasks (two easy, two medium, two hard). The task set,
its fixed tuning/held-out split and the split's hash live in ``benchmarks/unseen_tasks.py``.
"""
