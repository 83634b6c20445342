"""A plain CodeAct loop: the baseline that the product agent is measured against.

What a first implementation of CodeAct does, and nothing more: a plain prompt listing the
tools as ``def`` stubs with their docstrings, the first code block of each reply run as it is,
and the code's output (or its error) sent back. No policy, no repair, no hints, no repeat
notes, no variables summary. It runs in the same sandboxed ``KernelSession`` with the same
host tools over the same RPC, and asks the same model server with the same settings, so
any difference measured is the agent's own.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from traitlets.config import Config

from codeact_kernel import KernelSession
from codeact_kernel.kernels.execution import strip_ansi
from codeact_kernel.kernels.stdin import StdinToolChannel
from codeact_kernel.models.llm import LLM
from codeact_kernel.tools.bootstrap import kernel_bootstrap_code
from codeact_kernel.tools.server import ToolServer
from codeact_kernel.tools.tool import tool

PROMPT = """\
You solve tasks by writing Python code. Your code runs in a Python kernel, and variables \
persist between steps. These functions are available in the kernel:

{tools}

Reply with a ```python code block. You will see its output and can continue. When you know \
the answer, call final_answer(value) in your code.
"""
NO_CODE = "No code block found. Reply with a ```python code block."
_BLOCK_RE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def first_code_block(reply: str) -> str | None:
    """The first fenced block of a reply (an unclosed one runs to the end), or None."""
    match = _BLOCK_RE.search(reply)
    return match.group(1) if match and match.group(1).strip() else None


@dataclass
class LoopStep:
    """One model reply and what running its code gave."""

    reply: str
    code: str | None
    output: str = ""
    error: str = ""  # "Name: value" of the exception the code raised, if it raised
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # running the code
    llm_seconds: float = 0.0  # waiting for the reply


@dataclass
class LoopResult:
    """How a run ended: ``status`` is answered or max_steps."""

    status: str = "running"
    answer: Any = None
    steps: list[LoopStep] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "answered"


class MinimalLoop:
    """Solve one task at a time with ``tools`` (plain functions) and ``llm``."""

    def __init__(self, tools: Sequence[Callable[..., Any]], llm: LLM, *, max_steps: int = 6,
                 step_timeout: float = 60.0, max_output_chars: int = 4000,
                 config: Config | None = None) -> None:
        self.tools = [tool(f) for f in tools]
        self.llm = llm
        self.max_steps = max_steps
        self.step_timeout = step_timeout
        self.max_output_chars = max_output_chars
        self.config = config or Config()
        # Kept on the object so that a run cut short by its caller still shows its steps.
        self.result = LoopResult()

    async def arun(self, task: str) -> LoopResult:
        self.result = result = LoopResult()
        session = KernelSession(config=self.config)
        await session.async_start()
        server: ToolServer | None = None
        try:
            assert session.session_dir is not None
            server = ToolServer(self.tools, session.session_dir / "tools.sock",
                                token=secrets.token_hex(16))
            server.start()
            session.tool_handler = StdinToolChannel(server).answer
            session.startup_code = [kernel_bootstrap_code(
                self.tools, server.socket_path, token=server.token,
                transport=session.tool_transport)]
            await session.async_run_startup_code()
            await self._loop(task, session, server, result)
        finally:
            await session.async_shutdown()
            if server is not None:
                server.stop()
        return result

    async def _loop(self, task: str, session: KernelSession, server: ToolServer,
                    result: LoopResult) -> None:
        tools_text = "\n\n".join(t.prompt_doc() for t in self.tools)
        result.messages = [{"role": "system", "content": PROMPT.format(tools=tools_text)},
                           {"role": "user", "content": task}]
        for _ in range(self.max_steps):
            completion = await self.llm.complete(result.messages)
            result.prompt_tokens += completion.prompt_tokens
            result.completion_tokens += completion.completion_tokens
            result.messages.append({"role": "assistant", "content": completion.text})
            step = LoopStep(completion.text, first_code_block(completion.text),
                            llm_seconds=round(completion.duration, 3))
            result.steps.append(step)
            if step.code is None:
                result.messages.append({"role": "user", "content": NO_CODE})
                continue
            started = time.monotonic()
            run = await session.async_execute(step.code, timeout=self.step_timeout)
            step.seconds = round(time.monotonic() - started, 3)
            step.tool_calls = [{"name": c.name, "arguments": c.arguments, "error": c.error}
                               for c in server.drain_calls()]
            step.output = self._view(run)
            if run.error is not None:
                step.error = f"{run.error.ename}: {run.error.evalue}"[:300]
            if server.final_answer is not None:
                result.status, result.answer = "answered", server.final_answer.value
                return
            result.messages.append({"role": "user", "content": f"Output:\n{step.output}"})
        result.status = "max_steps"

    def _view(self, run: Any) -> str:
        parts: list[str] = []
        for out in run.outputs:
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(str(out.data.get("text/plain", "")))
            elif out.output_type == "error":
                parts.append(strip_ansi("\n".join(out.traceback)))
        if run.reason:
            parts.append(run.reason)
        text = "\n".join(p.rstrip("\n") for p in parts if p) or "(no output)"
        if len(text) > self.max_output_chars:
            half = self.max_output_chars // 2
            text = f"{text[:half]}\n[... output cut ...]\n{text[-half:]}"
        return text
