"""``codeact bench``: the action formats (code, json, auto) measured on your own tasks.

A task file is a Python module with a module-level ``TASKS`` list; see
:mod:`codeact_kernel.bench.tasks` for the format, and :mod:`codeact_kernel.bench.runner`
for what a run measures and writes.
"""

from __future__ import annotations

from .tasks import BenchTask, load_tasks

__all__ = ["BenchTask", "load_tasks"]
