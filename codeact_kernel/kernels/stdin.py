"""The Jupyter stdin channel, host side: input() answers, and host tools over it.

Tools use it as the back-channel that crosses gateways: a kernel behind a
Jupyter gateway, or in a container that shares no folder with the host,
cannot reach the tool server's ``ipc://`` socket. Every
Jupyter frontend can answer ``input()`` though, so with
``KernelSession.tool_transport = "stdin"`` the kernel-side stub
(``kernel_side/stdin_rpc.py``) sends a tool request as the prompt of an
``input_request``, and the host answers it in the ``input_reply``:

* prompt: ``TOOL_PROMPT_MARK`` + JSON ``[token, header, blob, ...]``: the same
  frames as on the socket (see tools/tool.py), token and header as text, blobs in
  base64;
* reply: JSON ``[header, blob, ...]`` in the same form.

Limits, by construction: tools can be called from the kernel's main thread
only (ipykernel's stdin socket belongs to the thread running the cell), and a
reply is capped below the 10 MiB websocket message limit of tornado-based
gateways. Calls are checked and recorded by the same ToolServer as socket calls.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..tools.approval import APPROVAL_PROMPT_MARK
from ..tools.calls import error_reply

if TYPE_CHECKING:
    from ..tools.server import ToolServer

# Kept equal to the kernel side's (kernel_side/stdin_rpc.py; a test checks it). The NULs
# keep a prompt a person or a program would write from ever matching.
TOOL_PROMPT_MARK = "\x00codeact-tool:1\x00"
# Tornado, under Jupyter Server and the gateways, refuses websocket messages over 10 MiB.
MAX_REPLY_CHARS = 8 * 1024 * 1024

ToolPromptHandler = Callable[[str], Awaitable[str]]
# Answers input() in the agent's code: (prompt, password) -> the line typed.
StdinHandler = Callable[[str, bool], "str | Awaitable[str]"]
# Decides on a tool call held for approval: (ticket, the human or None) -> the decision.
ApprovalHandler = Callable[[str, "StdinHandler | None"], Awaitable[str]]


def is_tool_prompt(prompt: str) -> bool:
    return prompt.startswith(TOOL_PROMPT_MARK)


def encode_frames(frames: list[bytes], texts: int = 1) -> str:
    """Frames as JSON text: the first ``texts`` (a reply's header; a request's token and
    header) as they are, blobs in base64."""
    return json.dumps([*(f.decode("utf-8") for f in frames[:texts]),
                       *(base64.b64encode(b).decode("ascii") for b in frames[texts:])])


def decode_frames(text: str, texts: int = 1) -> list[bytes]:
    """The inverse of :func:`encode_frames`; ValueError for anything malformed."""
    try:
        parts = json.loads(text)
        if (not isinstance(parts, list) or len(parts) < texts
                or not all(isinstance(p, str) for p in parts)):
            raise ValueError(f"not a list of at least {texts} strings")
        return [*(p.encode("utf-8") for p in parts[:texts]),
                *(base64.b64decode(p, validate=True) for p in parts[texts:])]
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise ValueError(f"malformed tool request on the stdin channel: {exc}") from None


class StdinToolChannel:
    """Answers the kernel's tool prompts with ``server`` (its checks, records and timeout)."""

    def __init__(self, server: ToolServer, max_reply_chars: int = MAX_REPLY_CHARS) -> None:
        self.server = server
        self.max_reply_chars = max_reply_chars
        self._threads = _DaemonThreads()

    async def answer(self, prompt: str) -> str:
        try:
            frames = decode_frames(prompt[len(TOOL_PROMPT_MARK):], texts=2)
        except ValueError as exc:
            self.server.rejected_messages += 1
            return encode_frames(error_reply("ProtocolError", str(exc), "protocol"))
        name = _tool_name(frames[1])
        timeout = self.server.call_timeout
        try:
            reply = await _in_daemon_thread(
                self._threads, lambda: self.server.handle_request(frames), timeout
            )
        except asyncio.TimeoutError:
            reply = error_reply("TimeoutError", f"host tool {name} did not finish within "
                                 f"{timeout:g}s (it may still be running on the host)", "timeout")
        text = encode_frames(reply)
        if len(text) > self.max_reply_chars:
            text = encode_frames(error_reply(
                "ValueError", f"the result of {name} is {len(text)} characters on the stdin "
                f"back-channel, over its {self.max_reply_chars} limit (a gateway's websocket "
                "message cap); return less data, e.g. a summary or a path", "protocol"))
        return text


def _tool_name(header: bytes) -> str:
    try:
        return str(json.loads(header).get("tool", "?"))[:100]
    except (ValueError, AttributeError):
        return "?"


class _DaemonThreads:
    """Daemon threads reused across calls (a thread start costs about 0.1 ms, a third of
    a call). Not asyncio.to_thread: its threads are joined at exit, so a hung tool
    would keep the process alive. A tool still running after its timeout keeps its
    thread; the next call gets another."""

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            jobs = self._idle.pop() if self._idle else None
        if jobs is None:
            jobs = queue.SimpleQueue()
            threading.Thread(target=self._work, args=(jobs,), daemon=True,
                             name="codeact-stdin-tool").start()
        jobs.put(job)

    def _work(self, jobs: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            jobs.get()()
            with self._lock:
                self._idle.append(jobs)


async def _in_daemon_thread(threads: _DaemonThreads, fn: Callable[[], Any], timeout: float) -> Any:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def work() -> None:
        try:
            outcome: tuple[bool, Any] = (True, fn())
        except BaseException as exc:
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop closed while the tool ran
            pass

    threads.submit(work)
    return await asyncio.wait_for(future, timeout)


# ---- the stdin channel of one cell --------------------------------------------------------


@dataclass
class InputClock:
    """Time spent waiting for the stdin handler (often a human): the kernel is not
    computing then, so it does not count against the cell's timeout."""

    waited: float = 0.0
    since: float | None = None
    error: Exception | None = None

    def paused(self, now: float) -> float:
        return self.waited + (now - self.since if self.since is not None else 0.0)


@dataclass
class StdinAnswers:
    """Who answers a cell's input requests: ``human`` for input(), ``tools`` for tool
    prompts (None: tools use the socket), and how to stop the cell if ``human`` fails."""

    human: StdinHandler | None
    tools: ToolPromptHandler | None
    interrupt: Callable[[], Awaitable[None]]
    approvals: ApprovalHandler | None = None


async def pump_stdin(kc: Any, msg_id: str, answers: StdinAnswers, clock: InputClock) -> None:
    """Answer the input requests of cell ``msg_id`` until cancelled."""
    while True:
        msg = await kc.get_stdin_msg()
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        content = msg["content"]
        prompt = str(content.get("prompt", ""))
        if answers.tools is not None and is_tool_prompt(prompt):
            # Not paused on the clock: tool time counts against the cell, as over ipc.
            kc.input(await answers.tools(prompt))
            continue
        if answers.approvals is not None and prompt.startswith(APPROVAL_PROMPT_MARK):
            # A human decides on a held tool call: waiting for them, like input(), is
            # not the cell's time.
            clock.since = time.monotonic()
            try:
                reply = await answers.approvals(prompt[len(APPROVAL_PROMPT_MARK):],
                                                answers.human)
            finally:
                clock.waited += time.monotonic() - clock.since
                clock.since = None
            kc.input(reply)
            continue
        if answers.human is None:  # only a direct _input_request can get here
            kc.input("")
            continue
        clock.since = time.monotonic()
        try:
            answer = answers.human(prompt, bool(content.get("password")))
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            # Unanswered, input() would wait until the timeout: stop the
            # cell now and hand the handler's error to the caller.
            clock.error = exc
            await answers.interrupt()
            return
        finally:
            clock.waited += time.monotonic() - (clock.since or time.monotonic())
            clock.since = None
        kc.input(str(answer))
