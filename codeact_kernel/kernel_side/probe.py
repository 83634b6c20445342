# Runs INSIDE the sandboxed kernel, as the module sys.modules["_codeact_probe"] (shipped
# as text by codeact_kernel.agent.steps; the kernel cannot import codeact_kernel). Nothing
# here has a name in the user's namespace, so model code does not shadow it by accident.
#
# The host calls it at the end of every step, in one silent execute that is also the
# step's end barrier: end_step() removes the hooks that model code registered (IPython
# events, input and AST transformers, timer signals, trace functions) and notes what it
# found; report() answers with the variables summary and those notes as
# application/json, so the host parses JSON, never a repr.
#
# Model code runs in this same process and can replace anything here: the host treats
# every answer as untrusted, and the real guarantees are on the host's side (tool calls
# are refused outside a step; see docs/security.md).
import atexit
import os
import signal
import sys
import threading
import types
from typing import Any

VERSION = 1
TRANSFORMER_LISTS = ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")
TIMER_SIGNALS = tuple(getattr(signal, n) for n in ("SIGALRM", "SIGVTALRM", "SIGPROF")
                      if hasattr(signal, n))
TIMERS = tuple(getattr(signal, n) for n in ("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF")
               if hasattr(signal, n))

_ip: Any = None
_baseline: "dict[str, Any]" = {}
_flags: "list[str]" = []
_cell_dirs: "tuple[str, ...]" = ()


class Answer:
    """Shown to the host as application/json: no repr of user objects to parse."""

    def __init__(self, payload: "dict[str, Any]") -> None:
        self.payload = payload

    def _repr_json_(self) -> "dict[str, Any]":
        return self.payload

    def __repr__(self) -> str:
        return "<codeact probe answer>"


def start(ip: Any, baseline: "dict[str, Any] | None" = None) -> None:
    """Remember what the kernel has before any model code (or keep an earlier baseline)."""
    global _ip, _baseline, _cell_dirs
    _ip = ip
    _cell_dirs = _cell_code_dirs(ip)
    _baseline = baseline or _capture()


def _capture() -> "dict[str, Any]":
    return {
        "events": {name: list(cbs) for name, cbs in _ip.events.callbacks.items()},
        "transformers": {a: list(getattr(_ip, a, None) or []) for a in TRANSFORMER_LISTS},
        "threads": {t.ident for t in threading.enumerate()},
        "atexit": _atexit_count(),
        "signals": {s: signal.getsignal(s) for s in TIMER_SIGNALS},
    }


def end_step() -> None:
    """Remove what model code left registered; note it, and what cannot be removed."""
    _remove_event_hooks()
    _remove_transformers()
    _stop_timers()
    _stop_tracing()
    _note_threads()
    _note_atexit()


def report(limit: int = 40, width: int = 80) -> Answer:
    """The variables summary and the notes of end_step() since the last report."""
    flags, _flags[:] = list(_flags), []
    return Answer({"v": VERSION, "variables": variables(limit, width), "flags": flags})


def variables(limit: int = 40, width: int = 80) -> "list[dict[str, str]]":
    hidden = set(_ip.user_ns_hidden)
    rows: list[dict[str, str]] = []
    for name, value in list(_ip.user_ns.items()):
        if name.startswith("_") or name in hidden:
            continue
        if isinstance(value, types.ModuleType) or _is_tool(value):
            continue
        rows.append(_describe(name, value, width))
        if len(rows) >= limit:
            rows.append({"name": "...", "type": "", "summary": "more variables not shown"})
            break
    return rows


def _is_tool(value: Any) -> bool:
    try:
        return getattr(value, "__codeact_tool__", False) is True
    except Exception:  # a __getattr__ that raises
        return False


def _describe(name: str, value: Any, width: int) -> "dict[str, str]":
    kind = type(value).__name__
    summary = ""
    try:
        shape = getattr(value, "shape", None)
        if shape is not None and hasattr(value, "columns"):
            cols = ", ".join(f"{c}: {t}" for c, t in list(value.dtypes.astype(str).items())[:12])
            summary = f"shape {tuple(shape)}; columns {cols}"
        elif shape is not None and hasattr(value, "dtype"):
            summary = f"shape {tuple(shape)}, dtype {value.dtype}"
        elif callable(value) and not isinstance(value, type):
            import inspect

            summary = f"function{inspect.signature(value)}"
        else:
            text = repr(value)
            if hasattr(value, "__len__") and not isinstance(value, str):
                summary = f"len {len(value)}: "
            summary += text if len(text) <= width else text[: width - 3] + "..."
    except Exception as exc:  # a broken __repr__ must not break the summary
        summary = f"<unrepresentable: {type(exc).__name__}>"
    return {"name": str(name), "type": str(kind), "summary": str(summary)[: width * 4]}


# ---- what model code leaves behind ---------------------------------------------------


def _cell_code_dirs(ip: Any) -> "tuple[str, ...]":
    """Where IPython files the code of cells (ipykernel: a temporary folder)."""
    try:
        name = ip.compile.get_code_name("", "pass", 0)
        return (os.path.dirname(name) + os.sep,) if os.path.isabs(name) else ()
    except Exception:
        return ()


def _made_by_cells(obj: Any) -> bool:
    """Whether ``obj`` involves code sent to the kernel (cells, exec'd strings), as opposed
    to an installed library's (matplotlib's inline backend registers a hook itself)."""
    return any(code.co_filename.startswith("<") or
               any(code.co_filename.startswith(d) for d in _cell_dirs)
               for code in _codes(obj))


def _codes(obj: Any) -> "list[types.CodeType]":
    """The code objects behind a callable: every wrapping layer (partials, bound methods,
    decorators), or the methods of an object's class."""
    found: list[types.CodeType] = []
    for _ in range(8):
        code = getattr(obj, "__code__", None)
        if isinstance(code, types.CodeType):
            found.append(code)
        elif not isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
            cls = obj if isinstance(obj, type) else type(obj)
            for klass in getattr(cls, "__mro__", ())[:-1]:  # not object itself
                found += [f.__code__ for f in vars(klass).values()
                          if isinstance(getattr(f, "__code__", None), types.CodeType)]
        inner = (getattr(obj, "func", None) or getattr(obj, "__func__", None)
                 or getattr(obj, "__wrapped__", None))
        if inner is None or inner is obj:
            break
        obj = inner
    return found


def _name(obj: Any) -> str:
    return str(getattr(obj, "__qualname__", None) or type(obj).__name__)[:60]


def _remove_event_hooks() -> None:
    baseline = _baseline.get("events", {})
    for event, callbacks in _ip.events.callbacks.items():
        for callback in list(callbacks):
            if any(callback is known for known in baseline.get(event, [])):
                continue
            if _made_by_cells(callback):
                _ip.events.unregister(event, callback)
                _flags.append(f"removed a {event} hook registered by model code: "
                              f"{_name(callback)}")
            else:
                baseline.setdefault(event, []).append(callback)  # a library's own


def _remove_transformers() -> None:
    for attr, known in _baseline.get("transformers", {}).items():
        current = getattr(_ip, attr, None)
        if not isinstance(current, list):
            continue
        for item in list(current):
            if any(item is k for k in known):
                continue
            if _made_by_cells(item):
                current.remove(item)
                _flags.append(f"removed an IPython {attr} entry added by model code: "
                              f"{_name(item)} (it would rewrite later steps' code)")
            else:
                known.append(item)


def _stop_timers() -> None:
    for sig, handler in _baseline.get("signals", {}).items():
        if signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)
            _flags.append(f"restored the {signal.Signals(sig).name} handler that model code "
                          "replaced (a timer would run its code during a later step)")
    for timer in TIMERS:
        if signal.getitimer(timer) != (0.0, 0.0):
            signal.setitimer(timer, 0)
            _flags.append("cancelled an interval timer set by model code")


def _stop_tracing() -> None:
    if sys.gettrace() is not None or sys.getprofile() is not None:
        sys.settrace(None)
        sys.setprofile(None)
        _flags.append("removed a trace or profile function set by model code")
    threading.settrace(None)
    threading.setprofile(None)


def _note_threads() -> None:
    known = _baseline.get("threads", set())
    alive = [t for t in threading.enumerate() if t.ident not in known and t.is_alive()]
    if alive:
        names = ", ".join(sorted(t.name[:40] for t in alive)[:5])
        _flags.append(f"{len(alive)} thread(s) started by model code are still running "
                      f"({names}): their tool calls during later steps count in those steps")


def _note_atexit() -> None:
    count = _atexit_count()
    if count > _baseline.get("atexit", count):
        _flags.append(f"model code registered {count - _baseline['atexit']} atexit "
                      "callback(s); they run when the kernel stops, outside any step")
        _baseline["atexit"] = count


def _atexit_count() -> int:
    try:
        return int(atexit._ncallbacks())
    except Exception:
        return 0
