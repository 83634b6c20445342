"""The startup code that turns a kernel into a tool client: RPC client plus stubs.

The client text (kernel_side/codec.py + rpc.py) is shipped into the kernel,
which cannot import codeact_kernel, and kept there as ``sys.modules["_codeact_rpc"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .serialize import FINAL_ANSWER, host_accept, kernel_source

if TYPE_CHECKING:
    from .tool import Tool

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
TRANSPORTS = ("ipc", "stdin")


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
    # The exception is raised here, in the stub, so the kernel's traceback ends
    # at the tool call instead of inside the RPC client.
    return (
        f"def {header}:\n"
        f"    {doc!r}\n"
        f"    __tracebackhide__ = True\n"
        f"    _codeact_ok, _codeact_value = _codeact_rpc.{rpc_call}\n"
        f"    if _codeact_ok:\n"
        f"        return _codeact_value\n"
        f"    raise _codeact_value\n"
    )


def kernel_bootstrap_code(
    tools: list[Tool],
    socket_path: Path,
    *,
    call_timeout: float = 300,
    token: str = "",
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    transport: str = "ipc",
) -> str:
    """Startup code for the kernel: the RPC client, every tool stub and final_answer.

    ``transport`` is how the stubs reach the host: "ipc" (the ZMQ socket at
    ``socket_path``) or "stdin" (input requests answered by the host, see
    codeact_kernel/kernels/stdin.py; ``socket_path`` is then unused).

    The client lives in ``sys.modules["_codeact_rpc"]``; the user namespace only
    gains the tools (an MCP server's as one namespace), ``final_answer``,
    ``search_tools``, ``ToolCallError`` and ``ToolDenied`` (all in ``user_ns_hidden``).
    Re-running it (after ``%reset``) reuses the client.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown tool transport {transport!r}; use one of {TRANSPORTS}")
    source = kernel_source(extra=("stdin_rpc.py",) if transport == "stdin" else ())
    stubs = "\n\n".join([*(t.render_stub() for t in tools), final_answer_stub()])
    names: list[str | list[str]] = [
        [getattr(t, "stub_name", t.name), t.name] if t.namespace else t.name for t in tools]
    names.append(FINAL_ANSWER)
    spaces = {t.namespace: t.namespace_doc for t in tools if t.namespace}
    config = {
        "socket_path": str(socket_path), "call_timeout": float(call_timeout), "token": token,
        "max_bytes": int(max_message_bytes), "host_accept": host_accept(),
        "transport": transport,
    }
    return (
        "def _codeact_bootstrap():\n"
        "    import sys, types\n"
        f"    source = {source!r}\n"
        "    key = hash(source)\n"
        "    mod = sys.modules.get('_codeact_rpc')\n"
        "    if mod is None or getattr(mod, '_codeact_key', None) != key:\n"
        "        if mod is not None and hasattr(mod, 'close'):\n"
        "            mod.close()\n"
        "        mod = types.ModuleType('_codeact_rpc')\n"
        "        exec(compile(source, '<codeact rpc client>', 'exec'), mod.__dict__)\n"
        "        mod._codeact_key = key\n"
        "        sys.modules['_codeact_rpc'] = mod\n"
        f"    mod.configure(**{config!r})\n"
        "    try:\n"
        "        hidden = get_ipython().user_ns_hidden\n"
        "    except Exception:\n"
        "        hidden = None\n"
        f"    mod.install(globals(), hidden, {stubs!r}, {names!r}, {spaces!r})\n"
        "_codeact_bootstrap()\n"
        "del _codeact_bootstrap\n"
    )
