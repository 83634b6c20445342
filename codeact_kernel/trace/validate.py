"""Bounds on a trace before the host works on it: size, counts, and the numbers it holds.

A trace is a file anyone can hand a reviewer. Replay waits on its step timeout, ``show``
formats its durations and token counts, every reader walks its cells and tool calls; so a
trace is refused, with an error naming the field and the fix, when its file is not a
regular file or is too big, when it holds too many cells or tool calls, or when a number
the host computes with is not a finite number (a NaN timeout hung replay).
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from traitlets import Float, Int
from traitlets.config import Configurable

from ..errors import TraceError

# Numbers that readers compute with or format as numbers; None is allowed where a value
# may be unknown (cost).
STEP_NUMBERS = ("step", "prompt_tokens", "completion_tokens", "cost", "llm_duration",
                "exec_duration")
TOTAL_NUMBERS = ("steps", "prompt_tokens", "completion_tokens", "cost", "duration")
CALL_NUMBERS = ("duration", "started")


class TraceLimits(Configurable):
    """What a trace may hold before a reader refuses it."""

    max_file_bytes = Int(
        1 << 30,
        help="Largest trace file read, in bytes; a bigger one is refused before reading.",
    ).tag(config=True)
    max_cells = Int(100_000, help="Most cells a trace may have.").tag(config=True)
    max_tool_calls = Int(
        1_000_000, help="Most tool calls recorded in a trace, all steps together."
    ).tag(config=True)
    max_step_timeout = Float(
        86_400.0,
        help="Largest step timeout (seconds) a trace may record; replay waits that long "
        "for a cell.",
    ).tag(config=True)


def read_trace_text(path: Path, limits: TraceLimits) -> str:
    """The file's text, read only if it is a regular file within the size limit (a FIFO
    or /dev/zero would block or never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise TraceError(f"{path}: no such file") from exc
    except OSError as exc:
        raise TraceError(f"{path}: cannot open it: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise TraceError(f"{path} is not a regular file, so not a trace notebook")
        if info.st_size > limits.max_file_bytes:
            raise TraceError(
                f"{path} is {info.st_size} bytes, over the {limits.max_file_bytes} this "
                "reader takes (TraceLimits.max_file_bytes); raise the limit if you trust it"
            )
        data = fh.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise TraceError(f"{path} grew past TraceLimits.max_file_bytes while being read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path} is not a text file, so not a notebook: {exc}") from exc


def check_trace(nb: NotebookNode, path: Path, limits: TraceLimits) -> None:
    """Raise TraceError naming the first field of ``nb`` a reader cannot use safely."""
    if len(nb.cells) > limits.max_cells:
        raise TraceError(
            f"{path} has {len(nb.cells)} cells, over TraceLimits.max_cells "
            f"({limits.max_cells}); raise the limit if you trust it"
        )
    meta = nb.metadata["codeact"]
    _check_timeout(meta.get("agent"), path, limits)
    _check_numbers(meta.get("totals"), TOTAL_NUMBERS, "metadata.codeact.totals", path)
    calls = 0
    for index, cell in enumerate(nb.cells):
        step = cell.get("metadata", {}).get("codeact")
        if not isinstance(step, dict):
            continue
        where = f"cells[{index}].metadata.codeact"
        _check_numbers(step, STEP_NUMBERS, where, path)
        tool_calls = step.get("tool_calls", [])
        if not isinstance(tool_calls, list):
            raise TraceError(f"{path}: {where}.tool_calls must be a list of calls")
        calls += len(tool_calls)
        if calls > limits.max_tool_calls:
            raise TraceError(
                f"{path} records more than TraceLimits.max_tool_calls ({limits.max_tool_calls}"
                ") tool calls; raise the limit if you trust it"
            )
        for number, call in enumerate(tool_calls):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise TraceError(f"{path}: {where}.tool_calls[{number}] must be an object "
                                 "with a string 'name'")
            _check_numbers(call, CALL_NUMBERS, f"{where}.tool_calls[{number}]", path)


def _check_timeout(agent: Any, path: Path, limits: TraceLimits) -> None:
    if not isinstance(agent, dict) or "step_timeout" not in agent:
        return
    value = agent["step_timeout"]
    if not (_is_number(value) and 0 < value <= limits.max_step_timeout):
        raise TraceError(
            f"{path}: metadata.codeact.agent.step_timeout is {value!r}; it must be a finite "
            f"number of seconds above 0 and at most {limits.max_step_timeout:g} "
            "(TraceLimits.max_step_timeout). Fix it in the notebook's metadata, for example "
            "60, before replaying."
        )


def _check_numbers(record: Any, fields: tuple[str, ...], where: str, path: Path) -> None:
    if record is None:
        return
    if not isinstance(record, dict):
        raise TraceError(f"{path}: {where} must be an object")
    for name in fields:
        value = record.get(name)
        if value is not None and not _is_number(value):
            raise TraceError(
                f"{path}: {where}.{name} is {value!r}; it must be a finite number. The trace "
                "was edited or damaged: fix or remove that field in the notebook's metadata."
            )


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
