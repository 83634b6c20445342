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


def setup_code(tool_client: str, preimport: bool = False) -> list[str]:
    """Startup code for an agent's kernel, run after every start, restart and reset;
    ``preimport`` adds the modules of PREIMPORTED."""
    return [source("harden.py"), tool_client, source("inspect_vars.py"),
            *([source("preimports.py")] if preimport else [])]


async def keep_full_output(session: KernelSession, key: int, text: str,
                           timeout: float | None = None) -> ExecutionResult:
    """Keep a cut step's whole text in the kernel as ``_outputs[key]``: a str literal sent
    back to the kernel the text came from (nothing is decoded on the host, and no file
    has to be shared with a kernel on another machine)."""
    code = templates.KEEP_OUTPUT.substitute(key=int(key), text=repr(text))
    return await session.async_execute(code, timeout=timeout, silent=True,
                                       store_history=False)
