"""The startup code that turns a kernel into a tool client: RPC client plus stubs.

The client text (kernel_side/codec.py + rpc.py) is shipped into the kernel,
which cannot import codeact_kernel, and kept there as ``sys.modules["_codeact_rpc"]``
by ``kernel_side/bootstrap.py``; the stubs are ``stubs.py``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..kernel_side import call, source
from .serialize import FINAL_ANSWER, host_accept, kernel_source
from .stubs import final_answer_stub

if TYPE_CHECKING:
    from .tool import Tool

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
TRANSPORTS = ("ipc", "stdin")


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
    source_text = kernel_source(extra=("stdin_rpc.py",) if transport == "stdin" else ())
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
    run = call("_codeact_bootstrap", source_text, config, stubs, names, spaces)
    return source("bootstrap.py") + run + "del _codeact_bootstrap\n"
