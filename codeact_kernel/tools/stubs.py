"""The text of a kernel-side tool stub: a function with the tool's signature and
docstring whose body asks the host (``kernel_side/templates.py`` holds the templates).

A leaf of the package: each kind of tool (``tool.py``, ``mcp.py``, a managed agent)
renders its own stub with these, and ``bootstrap.py`` ships them into the kernel.
"""

from __future__ import annotations

from ..kernel_side import templates
from .serialize import FINAL_ANSWER

FINAL_ANSWER_DOC = """Give the final answer of the task; the run ends after this step.

Any value works: JSON types cross as they are, DataFrames/Series as Parquet,
arrays as .npy, figures and images as PNG, anything else as its repr text.

Args:
    value: The answer.
"""


def final_answer_stub() -> str:
    """The kernel-side ``final_answer``, rendered like the tool stubs."""
    return stub_source(f"{FINAL_ANSWER}(value: 'Any') -> 'None'", FINAL_ANSWER_DOC, "final(value)")


def stub_source(header: str, doc: str | None, rpc_call: str) -> str:
    """A kernel-side function with ``header`` and ``doc`` whose body asks the host."""
    return templates.TOOL_STUB.substitute(header=header, doc=repr(doc), call=rpc_call)


def rpc_call(name: str, positional: list[str], named: list[str]) -> str:
    """The request a stub sends: its parameters, by position and by name."""
    return templates.TOOL_CALL.substitute(
        name=repr(name), positional="".join(f"{n}, " for n in positional),
        named=", ".join(f"{n!r}: {n}" for n in named))
