"""The host end of the tool RPC: a ZMQ ROUTER that runs tools for the kernel.

One socket thread owns every ZMQ socket (they are not thread-safe). Tool calls
run on a few daemon worker threads; finished calls are handed back through a queue plus
a wake-up pipe, so a slow tool never blocks other calls, and the socket thread
answers calls that overrun ``call_timeout`` itself. Everything that arrives is
untrusted: malformed messages get an error reply or are dropped, never a crash.
See codeact_kernel/tools/tool.py for the wire format.
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import zmq

from ..errors import ToolError
from .auth import TokenGate
from .bootstrap import kernel_bootstrap_code
from .calls import ToolCall, error_reply, exception_text, raw_arguments
from .serialize import FINAL_ANSWER, FinalAnswer, decode_final_answer, encode_value, summarize
from .window import REFUSED_MESSAGE, StepWindow
from .workers import Workers

if TYPE_CHECKING:
    from .approval import GateVerdict
    from .tool import Tool

    Gate = Callable[[Tool, dict[str, Any], dict[str, Any]], GateVerdict | None]

log = logging.getLogger(__name__)
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux
MAX_BLOBS = 16
# The token frame comes first and is checked before any other frame is looked at.
MAX_TOKEN_FRAME = 256
# Per peer; a REQ peer has one request in flight, so more only lets a flood queue.
RECEIVE_HWM = 2


@dataclass
class _Request:
    key: int
    ident: bytes
    header: dict[str, Any]
    blobs: list[bytes]
    deadline: float
    step: int | None = None


class ToolServer:
    """Serves ``tools`` (plus the built-in ``final_answer``) on ``ipc://<socket_path>``."""

    def __init__(
        self,
        tools: list[Tool],
        socket_path: Path,
        *,
        call_timeout: float = 300,
        token: str = "",
        max_workers: int = 8,
        max_pending: int = 256,
        max_pending_per_peer: int = 8,
        max_message_bytes: int = 64 * 1024 * 1024,
        require_step: bool = False,
        max_header_bytes: int = 4 * 1024 * 1024,
        max_answer_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        names = [t.name for t in tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ToolError(f"two tools share the name(s) {', '.join(duplicates)}")
        if FINAL_ANSWER in names:
            raise ToolError(f"{FINAL_ANSWER!r} is built in; give your tool another name")
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            raise ToolError(
                f"socket path {socket_path} is longer than {MAX_SOCKET_PATH} characters "
                "(a unix socket limit); use a shorter runtime folder"
            )
        self.tools = {t.name: t for t in tools}
        self.socket_path = Path(socket_path)
        self.call_timeout = call_timeout
        self.token = token
        self.max_workers = max_workers
        self.max_pending = max_pending
        self.max_pending_per_peer = max_pending_per_peer
        self.max_message_bytes = max_message_bytes
        # JSON headers are parsed whole (a few MB of "[]," are GBs of lists), and blobs
        # are decoded only within max_answer_bytes (Agent.max_answer_bytes owns it).
        self.max_header_bytes = max_header_bytes
        self.max_answer_bytes = max_answer_bytes
        self.calls: list[ToolCall] = []
        # With require_step, calls are served only between open_step and close_step.
        self.window = StepWindow(enforce=require_step)
        self._worker = threading.local()  # the step of the request a worker is running
        # Decides on calls of tools that need approval (tools/approval.py); None runs all.
        self.gate: Gate | None = None
        self.rejected_messages = 0
        self.refused_peers = 0  # handshakes refused: peers without the token
        self._drained = 0
        self._final: FinalAnswer | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._wake_lock = threading.Lock()
        self._wake_r = self._wake_w = -1
        self._done: queue.SimpleQueue[tuple[_Request, list[bytes]]] = queue.SimpleQueue()
        self._seq = itertools.count()

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> ToolServer:
        """Bind the socket and serve in a background thread (idempotent)."""
        if self._thread is not None:
            return self
        self._stopping = False
        self._ready.clear()
        self._thread = threading.Thread(target=self._serve, name="codeact-tool-server",
                                        daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            self._thread.join()
            self._thread = None
            raise ToolError(f"cannot serve tools on {self.socket_path}: {error}") from error
        return self

    def stop(self) -> None:
        """Stop serving, join the socket thread and close every socket (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        self._wake()
        thread.join()

    def __enter__(self) -> ToolServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def bootstrap_code(self, transport: str = "ipc") -> str:
        """The kernel startup code matching this server (its timeout and token)."""
        return kernel_bootstrap_code(
            list(self.tools.values()), self.socket_path, call_timeout=self.call_timeout,
            token=self.token, max_message_bytes=self.max_message_bytes, transport=transport,
        )

    def handle_request(self, frames: list[bytes]) -> list[bytes]:
        """Run one request that came by another back-channel than the socket (the
        Jupyter stdin channel); blocks while the tool runs. Same checks, same record."""
        header, problem = self._parse(frames)
        if header is None:
            self.rejected_messages += 1
            return error_reply("ProtocolError", problem, "protocol")
        served, step = self.window.admit(header["tool"])
        if not served:
            return error_reply("PermissionError", REFUSED_MESSAGE, "refused")
        request = _Request(next(self._seq), b"", header, frames[2:],
                           time.monotonic() + self.call_timeout, step)
        try:
            self._worker.step = step
            return self._dispatch(request)
        except Exception as exc:  # the kernel is waiting: always answer
            log.exception("tool server failure")
            return error_reply("InternalError", f"{type(exc).__name__}: {exc}", "protocol")

    # ---- results for the agent -------------------------------------------------------

    def open_step(self, step: int) -> None:
        """Serve tool calls, as calls of ``step`` (with require_step)."""
        self.window.open(step)

    def close_step(self) -> None:
        """Refuse (and record) every call until the next open_step (with require_step)."""
        self.window.close()

    def drain_calls(self) -> list[ToolCall]:
        """The calls recorded since the previous drain."""
        with self._lock:
            new = self.calls[self._drained:]
            self._drained = len(self.calls)
        return new

    @property
    def final_answer(self) -> FinalAnswer | None:
        with self._lock:
            return self._final

    def reset_final_answer(self) -> None:
        with self._lock:
            self._final = None

    # ---- socket thread ---------------------------------------------------------------

    def _wake(self) -> None:
        # Under the lock: a worker that outlives stop() must never write to a
        # closed (and possibly reused) file descriptor.
        with self._wake_lock:
            if self._wake_w < 0:
                return
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass  # the pipe is full: a wake-up is pending anyway

    def _serve(self) -> None:
        ctx = zmq.Context()
        router = ctx.socket(zmq.ROUTER)
        with self._wake_lock:
            self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        pool = Workers(self.max_workers)
        gate: TokenGate | None = None
        try:
            if self.token:
                gate = TokenGate(ctx, self.token)
                gate.guard(router)
            router.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)  # larger: disconnected
            router.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
            router.setsockopt(zmq.SNDHWM, 1000)
            router.bind(f"ipc://{self.socket_path}")
            # The kernel runs as another uid; the session folder is traversable only.
            os.chmod(self.socket_path, 0o666)
        except (zmq.ZMQError, OSError) as exc:
            self._start_error = exc
        self._ready.set()
        try:
            if self._start_error is None:
                self._loop(router, pool, gate)
        finally:
            pool.shutdown(timeout=1.0)
            router.close(0)
            if gate is not None:
                gate.close()
            ctx.term()
            with self._wake_lock:
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1
            if self._start_error is None:
                try:
                    self.socket_path.unlink()
                except OSError:
                    pass

    def _loop(self, router: zmq.Socket[bytes], pool: Workers, gate: TokenGate | None) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        if gate is not None:
            assert gate.monitor is not None
            poller.register(gate.socket, zmq.POLLIN)
            poller.register(gate.monitor, zmq.POLLIN)
        pending: dict[int, _Request] = {}
        while not self._stopping:
            timeout = None
            if pending:
                nearest = min(r.deadline for r in pending.values())
                timeout = max(0, int((nearest - time.monotonic()) * 1000) + 1)
            events = dict(poller.poll(timeout))
            if gate is not None and gate.socket in events:
                gate.answer()
            if gate is not None and gate.monitor in events:
                gate.count_refusals()
                self.refused_peers = gate.refused
            if self._wake_r in events:
                self._send_finished(router, pending)
            if router in events:
                for _ in range(100):  # bounded, so replies and timeouts get their turn
                    try:
                        # Not copied: a refused frame is freed without ever being read.
                        frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._accept(router, pool, pending, frames)
            self._expire(router, pending)

    def _send_finished(self, router: zmq.Socket[bytes], pending: dict[int, _Request]) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                request, reply = self._done.get_nowait()
            except queue.Empty:
                return
            if pending.pop(request.key, None) is not None:  # else: it already timed out
                _send(router, request.ident, reply)

    def _expire(self, router: zmq.Socket[bytes], pending: dict[int, _Request]) -> None:
        now = time.monotonic()
        for key, request in list(pending.items()):
            if now >= request.deadline:
                del pending[key]
                name = str(request.header.get("tool"))
                _send(router, request.ident, error_reply(
                    "TimeoutError", f"host tool {name} did not finish within "
                    f"{self.call_timeout:g}s (it may still be running on the host)", "timeout"))

    def _accept(
        self, router: zmq.Socket[bytes], pool: Workers,
        pending: dict[int, _Request], frames: list[zmq.Frame],
    ) -> None:
        # A REQ peer sends [identity, b"", token, header, blobs...]; anything else
        # cannot be answered in a way REQ understands, so it is dropped.
        if len(frames) < 3 or len(frames[1]) != 0:
            self.rejected_messages += 1
            return
        ident = frames[0].bytes
        header, problem = self._parse(frames[2:])
        if header is None:
            self.rejected_messages += 1
            _send(router, ident, error_reply("ProtocolError", problem, "protocol"))
            return
        # Per-peer and global caps: a flooding peer only starves itself (a REQ
        # socket, one per kernel thread, never has more than one call in flight).
        served, step = self.window.admit(header["tool"])
        if not served:
            _send(router, ident, error_reply("PermissionError", REFUSED_MESSAGE, "refused"))
            return
        mine = sum(1 for r in pending.values() if r.ident == ident)
        if mine >= self.max_pending_per_peer or len(pending) >= self.max_pending:
            _send(router, ident, error_reply(
                "BusyError", f"the host is busy with {len(pending)} tool calls; retry later",
                "busy"))
            return
        request = _Request(next(self._seq), ident, header, [f.bytes for f in frames[4:]],
                           time.monotonic() + self.call_timeout, step)
        pending[request.key] = request
        pool.submit(lambda: self._run(request))

    def _parse(self, frames: list[Any]) -> tuple[dict[str, Any] | None, str]:
        """Check [token, header, blobs...] (bytes or zmq frames) in order of cost: the
        token frame first, then the header's size, then its JSON."""
        token = frames[0]
        if len(token) > MAX_TOKEN_FRAME or not hmac.compare_digest(
                _as_bytes(token), self.token.encode()):
            return None, "bad or missing token (the first frame)"
        if len(frames) < 2:
            return None, "a request is a token frame, a header frame, then blobs"
        if len(frames) > MAX_BLOBS + 2:
            return None, f"too many frames ({len(frames)})"
        if len(frames[1]) > self.max_header_bytes:
            return None, (
                f"the request header is {len(frames[1]):,} bytes, over the host's limit of "
                f"{self.max_header_bytes:,} (ToolServer max_header_bytes): arguments are "
                "plain JSON; pass large data as a DataFrame or array, or pass a path")
        try:
            header = json.loads(_as_bytes(frames[1]))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None, "the request header is not JSON"
        if not isinstance(header, dict) or not isinstance(header.get("tool"), str):
            return None, "the request header must be an object with a 'tool' string"
        if header.get("v", 1) != 1:
            return None, f"unsupported protocol version {header.get('v')!r}"
        return header, ""

    # ---- worker threads --------------------------------------------------------------

    def _run(self, request: _Request) -> None:
        try:
            self._worker.step = request.step
            reply = self._dispatch(request)
        except BaseException as exc:  # never lose a reply: the kernel is waiting for it
            log.exception("tool server failure")
            reply = error_reply("InternalError", f"{type(exc).__name__}: {exc}", "protocol")
        self._done.put((request, reply))
        self._wake()

    def _dispatch(self, request: _Request) -> list[bytes]:
        header = request.header
        name = header["tool"]
        args, kwargs = header.get("args", []), header.get("kwargs", {})
        started, t0 = time.time(), time.perf_counter()
        if name == FINAL_ANSWER:
            return self._final_answer(request, started, t0)
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join([*sorted(self.tools), FINAL_ANSWER])
            message = f"unknown host tool {name[:100]!r}; the tools are: {known}"
            self._record(name[:100], {}, None, message, started, t0)
            return error_reply("NameError", message, "unknown_tool")
        try:
            arguments = tool.bind(args, kwargs)
        except ToolError as exc:
            self._record(name, raw_arguments(args, kwargs), None, str(exc), started, t0)
            return error_reply("TypeError", str(exc), "arguments")
        verdict = self.gate(tool, arguments, header) if self.gate is not None else None
        if verdict is not None:
            if verdict.category == "denied":
                self._record(name, arguments, None, f"ToolDenied: {verdict.message}", started, t0)
            return error_reply("ToolDenied", verdict.message, verdict.category,
                               ticket=verdict.ticket)
        try:
            value = tool.invoke(arguments)
        except Exception as exc:
            message = exception_text(exc)
            self._record(name, arguments, None, f"{type(exc).__name__}: {message}", started, t0)
            return error_reply(type(exc).__name__, message, "tool")
        accept = header.get("accept")
        try:
            obj, blobs, notes = encode_value(value, accept if isinstance(accept, list) else [])
        except Exception as exc:
            message = f"the result of {name} could not be sent: {type(exc).__name__}: {exc}"
            self._record(name, arguments, summarize(value), message, started, t0)
            return error_reply("ValueError", message, "protocol")
        self._record(name, arguments, summarize(value), None, started, t0, value)
        reply = {"ok": True, "result": obj}
        if notes:
            reply["notes"] = notes
        return [json.dumps(reply).encode(), *blobs]

    def _final_answer(self, request: _Request, started: float, t0: float) -> list[bytes]:
        kwargs, notes = request.header.get("kwargs"), request.header.get("notes") or []
        if not isinstance(kwargs, dict) or "value" not in kwargs or not isinstance(notes, list):
            message = "final_answer(value) takes exactly one argument, value"
            self._record(FINAL_ANSWER, {}, None, message, started, t0)
            return error_reply("TypeError", message, "arguments")
        try:
            answer = decode_final_answer(kwargs["value"], request.blobs, notes,
                                         self.max_answer_bytes)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            message = f"the final answer could not be decoded: {exc}"
            self._record(FINAL_ANSWER, {}, None, message, started, t0)
            return error_reply("ValueError", message, "arguments")
        with self._lock:
            self._final = answer
        self._record(FINAL_ANSWER, {"value": summarize(answer.value)}, answer.kind, None,
                     started, t0)
        return [b'{"ok": true, "result": null}']

    def _record(
        self, name: str, arguments: dict[str, Any], result: str | None, error: str | None,
        started: float, t0: float, value: Any = None,
    ) -> None:
        call = ToolCall(name, arguments, result, error, started, time.perf_counter() - t0, value,
                        getattr(self._worker, "step", None))
        with self._lock:
            self.calls.append(call)


def _as_bytes(frame: Any) -> bytes:
    return frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame)


def _send(router: zmq.Socket[bytes], ident: bytes, frames: list[bytes]) -> None:
    try:
        router.send_multipart([ident, b"", *frames], zmq.NOBLOCK)
    except zmq.ZMQError:  # the peer is gone or not reading: never block the host
        pass
