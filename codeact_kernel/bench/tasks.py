"""The task-file format of ``codeact bench``.

A task file is a Python module (run as it is: it is your code) with a module-level
``TASKS``: a list (or tuple) of tasks, each a :class:`BenchTask`, a dict, or any object
with the same attributes:

``name`` (str, unique)
    How the task is reported and its traces are named.
``prompt`` (str)
    What the agent is asked.
``tools`` (list of functions or ``@tool`` objects)
    The host tools the agent gets (typed, documented functions, as for ``Agent``).
``check`` (callable)
    ``check(answer) -> bool``: whether the final answer is right. An exception counts as
    a wrong answer.
``difficulty`` (str, optional)
    A label; the report gives the success rate per label too.
``required`` (list of tools, optional)
    Tools the run must have called without error for a pass: an answer that is right by
    luck (a model typing in data it should have fetched) does not count.

For example::

    from codeact_kernel.bench import BenchTask

    def get_population(city: str) -> int:
        \"\"\"The population of a city.

        Args:
            city: The city's name.
        \"\"\"
        return {"paris": 2_102_650, "lyon": 522_250}[city.lower()]

    TASKS = [
        BenchTask("paris_lyon", "How many people live in Paris and Lyon together?",
                  [get_population], lambda answer: answer == 2_624_900, difficulty="easy",
                  required=[get_population]),
        {"name": "lyon", "prompt": "Population of Lyon?", "tools": [get_population],
         "check": lambda a: a == 522_250},
    ]
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BenchError, ToolError
from ..tools.tool import Tool, tool


@dataclass
class BenchTask:
    """One task of a task file, checked."""

    name: str
    prompt: str
    tools: Sequence[Callable[..., Any]]
    check: Callable[[Any], Any]
    difficulty: str = ""
    required: Sequence[Callable[..., Any]] = field(default_factory=list)

    def tool_objects(self) -> list[Tool]:
        """The tools as the agent takes them (built once per run: cheap)."""
        return [t if isinstance(t, Tool) else tool(t) for t in self.tools]

    def required_names(self) -> list[str]:
        return [t.name if isinstance(t, Tool) else str(getattr(t, "__name__", t))
                for t in self.required]


def load_tasks(path: str | Path, only: Sequence[str] = ()) -> list[BenchTask]:
    """The tasks of the file at ``path`` (those named in ``only``, when given)."""
    module = _import_file(Path(path))
    raw = getattr(module, "TASKS", None)
    if not isinstance(raw, (list, tuple)) or not raw:
        raise BenchError(f"{path} has no TASKS list (or it is empty): define a module-level "
                         "TASKS = [...] of tasks with name, prompt, tools and check")
    tasks = [_task(entry, index, path) for index, entry in enumerate(raw)]
    names = [t.name for t in tasks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BenchError(f"{path}: task names must be unique; repeated: {', '.join(twice)}")
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise BenchError(f"{path} has no task {unknown[0]!r}; its tasks: "
                             + ", ".join(names[:50]))
        tasks = [t for t in tasks if t.name in only]
    return tasks


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise BenchError(f"task file {path} does not exist")
    name = f"codeact_bench_tasks_{abs(hash(path.resolve())) % 10**8}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BenchError(f"{path} is not a Python file (give a .py task file)")
    module = importlib.util.module_from_spec(spec)
    # Its folder first on the path, so a task file can import the modules beside it.
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise BenchError(f"importing the task file {path} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    return module


def _task(entry: Any, index: int, path: str | Path) -> BenchTask:
    def get(key: str, default: Any = None) -> Any:
        if isinstance(entry, dict):
            return entry.get(key, default)
        return getattr(entry, key, default)

    where = f"{path}: TASKS[{index}]"
    name = get("name")
    if not isinstance(name, str) or not name.strip():
        raise BenchError(f"{where} needs a 'name' (a non-empty string)")
    where = f"{path}: task {name!r}"
    prompt, tools, check = get("prompt"), get("tools", ()), get("check")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BenchError(f"{where} needs a 'prompt' (the task, a non-empty string)")
    if not isinstance(tools, (list, tuple)) or not all(callable(t) for t in tools):
        raise BenchError(f"{where}: 'tools' must be a list of functions or @tool objects")
    if not callable(check):
        raise BenchError(f"{where} needs a 'check': a function of the answer returning "
                         "True when it is right")
    difficulty = get("difficulty", "") or ""
    required = get("required", ()) or ()
    if not isinstance(required, (list, tuple)) or any(r not in tools for r in required):
        raise BenchError(f"{where}: 'required' must list some of the task's own tools")
    task = BenchTask(name, prompt, list(tools), check, str(difficulty), list(required))
    try:
        task.tool_objects()
    except ToolError as exc:
        raise BenchError(f"{where}: {exc}") from exc
    return task
