"""Every line of code the host sends into the kernel lives in this folder.

The ``.py`` files here run INSIDE the sandboxed kernel: they are shipped as text (the
kernel cannot import codeact_kernel), except ``codec.py``, which the host imports too so
that both ends share one value codec, and ``templates.py``, the few statements the host
fills in for each kernel (tool stubs, a kept output). The host reads a file with
:func:`source` and calls what it defines with :func:`call`, whose arguments are literal
values only: nothing from the host is ever pasted into kernel code as text.

Nothing here imports codeact_kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# The name of the kernel-side probe module (probe.py) in the kernel's sys.modules.
PROBE_MODULE = "_codeact_probe"


def source(name: str) -> str:
    """The text of ``name`` (e.g. ``"harden.py"``) in this folder."""
    return (HERE / name).read_text(encoding="utf-8")


def call(function: str, *args: Any) -> str:
    """A statement calling ``function`` (defined by a file here) with literal arguments.

    Each argument is written as its ``repr`` and must read back equal, so only plain data
    (str, numbers, bools, None, and lists, tuples and dicts of those) can pass.
    """
    import ast

    if not function.isidentifier():
        raise ValueError(f"not a function name: {function!r}")
    literals = [repr(arg) for arg in args]
    for arg, text in zip(args, literals, strict=True):
        try:
            same = ast.literal_eval(text) == arg
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            same = False
        if not same:
            raise ValueError(f"{function}(): {type(arg).__name__} is not a literal value")
    return f"{function}({', '.join(literals)})\n"
