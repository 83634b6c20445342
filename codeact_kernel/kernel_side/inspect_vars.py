# Runs INSIDE the sandboxed kernel (shipped as text; the kernel cannot import
# codeact_kernel). Defines two helpers; the host calls _codeact_vars() through
# user_expressions so the kernel's history and Out are untouched.
import json as _codeact_json
from typing import Any as _CodeActAny


def _codeact_vars(limit: int = 40, width: int = 80) -> str:
    import types

    ip = get_ipython()  # type: ignore[name-defined]  # noqa: F821 - IPython's builtin
    hidden = set(ip.user_ns_hidden)
    rows: list[dict[str, str]] = []
    for name, value in list(ip.user_ns.items()):
        if name.startswith("_") or name in hidden:
            continue
        if isinstance(value, types.ModuleType) or getattr(value, "__codeact_tool__", False):
            continue
        rows.append(_codeact_describe(name, value, width))
        if len(rows) >= limit:
            rows.append({"name": "...", "type": "", "summary": "more variables not shown"})
            break
    return _codeact_json.dumps(rows)


def _codeact_describe(name: str, value: _CodeActAny, width: int) -> dict[str, str]:
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
    return {"name": name, "type": kind, "summary": summary}


class _CodeActOutputs(dict):  # type: ignore[type-arg]
    """_outputs[step]: the full text of a step whose output the model saw truncated.

    The host sets each entry with a silent execute, so it works wherever the kernel runs
    (a gateway's, a container's), with no file shared between host and kernel.
    """

    def __missing__(self, step: int) -> str:
        raise KeyError(f"no output kept for step {step}: only steps whose output was cut "
                       f"are kept, and these are: {sorted(self) or 'none yet'}")
