"""One call of a host tool as the host records it for the trace, and the error replies
the kernel gets: the parts of a call that do not depend on how it arrived (the tool socket
or the Jupyter stdin channel)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .serialize import summarize


@dataclass
class ToolCall:
    """One call of a host tool from the kernel, as recorded for the trace."""

    name: str
    arguments: dict[str, Any]
    result: str | None
    error: str | None
    started: float
    duration: float
    # The result itself (not only its summary), so the trace can record it for replay.
    value: Any = field(default=None, repr=False)
    step: int | None = None  # the agent step that was running when the call arrived


def error_reply(type_name: str, message: str, category: str, **extra: str) -> list[bytes]:
    """The frames of a failed call's reply (the kernel raises ``type_name`` from them)."""
    error = {"type": type_name, "message": message, "category": category, **extra}
    return [json.dumps({"ok": False, "error": error}).encode()]


def exception_text(exc: BaseException) -> str:
    """A tool's exception message as the kernel shows it."""
    # str(KeyError("x")) quotes its message; the kernel should see it as written.
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def raw_arguments(args: Any, kwargs: Any) -> dict[str, Any]:
    """The arguments of a call that did not bind to its tool, as the trace records them."""
    raw = dict(kwargs) if isinstance(kwargs, dict) else {"<kwargs>": summarize(kwargs)}
    if args:
        raw["<args>"] = args if isinstance(args, list) else summarize(args)
    return raw
