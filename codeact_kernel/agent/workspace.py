"""What the agent itself runs in its kernel, besides the model's code.

The kernel's setup (hardening, the tool client, ``_outputs``) and ``_outputs[N]`` for a
step whose output the model saw cut: silent executes that leave the kernel's history
alone (the end of a step and the variables summary are ``steps.py``'s). The code itself
is in ``kernel_side/``.
"""

from __future__ import annotations

from ..kernel_side import source, templates
from ..kernels.execution import ExecutionResult
from ..kernels.session import KernelSession
from ..tools.bootstrap import kernel_bootstrap_code
from ..tools.server import ToolServer
from ..tools.tool import Tool
from .steps import probe_install_code


def setup_code(tools: list[Tool], server: ToolServer, *, call_timeout: float,
               transport: str, preimport: bool = False) -> list[str]:
    """Startup code for an agent's kernel, run after every start, restart and reset: the
    hardening, the client of ``server``'s ``tools`` over ``transport``, the variables
    summary, the modules of PREIMPORTED with ``preimport``, and the step probe last, so
    that what the setup itself registered is the probe's baseline."""
    tool_client = kernel_bootstrap_code(tools, server.socket_path, call_timeout=call_timeout,
                                        token=server.token, transport=transport)
    return [source("harden.py"), tool_client, source("inspect_vars.py"),
            *([source("preimports.py")] if preimport else []), probe_install_code()]


async def keep_full_output(session: KernelSession, key: int, text: str,
                           timeout: float | None = None) -> ExecutionResult:
    """Keep a cut step's whole text in the kernel as ``_outputs[key]``: a str literal sent
    back to the kernel the text came from (nothing is decoded on the host, and no file
    has to be shared with a kernel on another machine)."""
    code = templates.KEEP_OUTPUT.substitute(key=int(key), text=repr(text))
    return await session.async_execute(code, timeout=timeout, silent=True,
                                       store_history=False)
