# Replay setup: serves the tool results recorded in this trace, so the notebook
# re-runs without the host tools, without any model and without network.
# Written by codeact_kernel; `codeact replay` and "Run All" both execute it first.
from __future__ import annotations

import json as _codeact_json

_CODEACT_RECORDED = _codeact_json.loads(__RECORDED__)
_codeact_cursor: dict = {}


class ToolCallError(Exception):
    """A tool's recorded exception, raised again on replay."""


class ToolDenied(ToolCallError):
    """A recorded call that was denied approval, denied again on replay."""


def _codeact_rebuild(value, kind):
    if kind == "dataframe":
        import pandas as pd

        return pd.DataFrame(**value)
    if kind == "ndarray":
        import numpy as np

        return np.array(value["data"], dtype=value["dtype"])
    return value


def _codeact_error(name, error):
    # As the live stub raises it: a builtin type stays catchable as itself.
    import builtins

    type_name, _, message = error.partition(": ")
    if type_name == "ToolDenied":
        return ToolDenied(message)
    base = getattr(builtins, type_name, None)
    if isinstance(base, type) and issubclass(base, Exception) and base is not Exception:
        try:
            made = type(type_name, (ToolCallError, base), {"__module__": "builtins"})
            return made(f"{message} (raised by host tool {name})")
        except Exception:
            pass
    return ToolCallError(f"{error} (raised by host tool {name})")


def _codeact_replay_call(name, arguments):
    calls = _CODEACT_RECORDED.get(name, [])
    index = _codeact_cursor.get(name, 0)
    if index >= len(calls):
        raise RuntimeError(
            f"replay diverged: {name}() was called {index + 1} times, but the trace recorded "
            f"{len(calls)} calls"
        )
    _codeact_cursor[name] = index + 1
    call = calls[index]
    recorded = call.get("arguments", {})
    if _codeact_json.loads(_codeact_json.dumps(arguments, default=repr)) != recorded:
        raise RuntimeError(
            f"replay diverged: {name}() was called with {arguments!r}; the trace recorded "
            f"{recorded!r}"
        )
    if call.get("error"):
        raise _codeact_error(name, call["error"])
    if "value" not in call:
        raise RuntimeError(f"the trace did not record the result of {name}(); use --live-tools")
    return _codeact_rebuild(call["value"], call.get("value_kind", "json"))


def final_answer(value):
    """Recorded runs end here; on replay the value is kept in _codeact_final_answer.

    Silent and returning None, like the live tool, so outputs compare equal.
    """
    global _codeact_final_answer
    _codeact_final_answer = value


_outputs: dict = {}
