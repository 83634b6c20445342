"""The host end of egress: an HTTP proxy on a unix socket bound into the sandbox.

The kernel has no network of its own. Its HTTP clients talk to a loopback
bridge inside the sandbox (codeact_kernel/kernel_side/egress_bridge.py), which
carries each connection to this socket. Here every request is judged by
:class:`EgressPolicy` before any byte leaves the host:

- plain HTTP: an absolute ``http://`` URL; one request per connection, sent
  upstream with our own Host and ``Connection: close``, both bodies framed, so
  nothing the kernel pipelines behind it goes out unjudged;
- HTTPS: ``CONNECT host:port``, then the TLS ClientHello's SNI must name the
  same host, so a tunnel opened for an allowed name cannot speak to another.

Names are resolved here (there is no resolver inside), every address is
checked, and the connection goes to the checked address itself.

The proxy runs its own event loop on a daemon thread, so it serves the kernel
whatever the caller's loop does between cells (the sync API runs none).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .channel import Channel, ChannelClosed
from .policy import EgressPolicy
from .wire import (
    MAX_HEAD,
    Target,
    WireError,
    body_length,
    copy_body,
    forwarded_request,
    forwarded_response,
    parse_head,
    read_client_hello,
    request_target,
)

log = logging.getLogger(__name__)
Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_SOCKET_PATH = 107
READ_LIMIT = 256 * 1024  # buffered while a head is parsed
STATUS_TEXT = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway",
               503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class EgressRecord:
    """One request as the trace keeps it. ``method`` is CONNECT for an HTTPS tunnel."""

    method: str
    host: str
    port: int
    allowed: bool = False
    rule: str = ""
    status: int | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    started: float = 0.0
    duration: float = 0.0
    error: str = ""
    id: int = 0
    open: bool = False  # still connected when recorded: later records carry the rest
    continued: bool = False  # bytes since this connection's previous record


class BudgetExhausted(Exception):
    """The session's egress byte budget is spent."""


class _Refused(Exception):
    """A request that gets an error response instead of a connection."""

    def __init__(self, status: int, rule: str, message: str) -> None:
        super().__init__(message)
        self.status, self.rule, self.message = status, rule, message


class EgressProxy:
    """Judge and carry the sandbox's HTTP(S) requests; keep a record of each one."""

    def __init__(
        self, policy: EgressPolicy, socket_path: Path, *, byte_budget: int = 0,
        connect_timeout: float = 10.0, idle_timeout: float = 120.0, max_connections: int = 64,
        max_records: int = 1000, resolver: Resolver | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            raise ValueError(f"egress socket path {socket_path} is too long for a unix socket; "
                             "configure a shorter runtime folder")
        self.policy = policy
        self.socket_path = socket_path
        self.byte_budget = byte_budget
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_records = max_records
        self.resolver = resolver or _resolve_dns
        self.log = logger or log
        self.bytes_used = 0
        self.dropped_records = 0
        self._finished: list[EgressRecord] = []
        self._live: dict[int, EgressRecord] = {}
        self._reported: dict[int, tuple[int, int]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> EgressProxy:
        """Listen on ``socket_path`` and serve on a background thread (idempotent)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._serve, name="codeact-egress", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            self._thread.join()
            self._thread = None
            raise OSError(f"cannot serve egress on {self.socket_path}: {error}") from error
        return self

    def stop(self) -> None:
        """Close the socket and every connection, and join the thread (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._close()))
        thread.join(10)

    def __enter__(self) -> EgressProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drain(self) -> list[dict[str, Any]]:
        """What happened since the last drain, as JSON-ready dicts in order of start.

        A connection still open (a client's keep-alive pool holds HTTPS tunnels) is
        recorded with ``open`` and its bytes so far; its later records are
        ``continued`` and carry only the bytes since, so sums stay right.
        """
        out = []
        with self._lock:  # _keep, on the proxy's thread, moves records under it too
            finished, self._finished = self._finished, []
            live = [r for r in self._live.values() if r.method or r.error]
            dropped, self.dropped_records = self.dropped_records, 0
            live_ids = {r.id for r in live}
            for record in sorted(finished + live, key=lambda r: r.id):
                is_open = record.id in live_ids
                seen = (self._reported.get(record.id) if is_open
                        else self._reported.pop(record.id, None))
                up, down = record.bytes_up, record.bytes_down
                if is_open and seen == (up, down):
                    continue  # nothing new on a connection already reported
                entry = asdict(record)
                entry.update(open=is_open, continued=seen is not None,
                             bytes_up=up - (seen[0] if seen else 0),
                             bytes_down=down - (seen[1] if seen else 0))
                if is_open:
                    self._reported[record.id] = (up, down)
                out.append(entry)
        if dropped:
            out.append({"method": "", "host": "", "port": 0, "allowed": False,
                        "rule": "log-limit", "error": f"{dropped} more requests not recorded"})
        return out

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(loop.create_unix_server(
                lambda: Channel(READ_LIMIT, self._spawn), path=str(self.socket_path)))
            # The folder's mode decides who may connect (see egress_socket_path).
            os.chmod(self.socket_path, 0o666)
        except BaseException as exc:  # handed to start()
            self._start_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _spawn(self, channel: Channel) -> None:
        task = asyncio.ensure_future(self._handle(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(0)  # let the closed transports release their sockets
        await asyncio.sleep(0)
        with contextlib.suppress(OSError):
            self.socket_path.unlink()
        asyncio.get_running_loop().stop()

    # ---- one connection from the sandbox --------------------------------------------------

    async def _handle(self, client: Channel) -> None:
        record = EgressRecord("", "", 0, started=time.time(), id=next(self._ids))
        with self._lock:
            self._live[record.id] = record
        began = time.monotonic()
        upstream: list[Channel] = []
        try:
            if len(self._tasks) > self.max_connections:
                raise _Refused(503, "connections", f"more than {self.max_connections} "
                               "connections at once through the egress proxy")
            await self._exchange(client, upstream, record)
        except _Refused as refusal:
            record.allowed = record.allowed and refusal.status >= 500
            record.rule = record.rule if record.allowed else refusal.rule
            record.status, record.error = refusal.status, refusal.message
            await _refuse(client, refusal)
        except ChannelClosed as exc:
            if client.buffer or record.method:  # not a client that connected and left
                record.error = f"closed early: {exc}"
        except (WireError, ValueError) as exc:
            record.error = f"malformed: {exc}"
            record.rule = record.rule or "request"
        except BudgetExhausted:
            record.error = "cut: SandboxConfig.egress_byte_budget is spent"
        except asyncio.TimeoutError:
            record.error = f"no byte for {self.idle_timeout:g}s"
        except OSError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            record.duration = round(time.monotonic() - began, 6)
            client.close()
            for channel in upstream:
                channel.close()
            self._keep(record)

    async def _exchange(self, client: Channel, upstream: list[Channel],
                        record: EgressRecord) -> None:
        raw = await client.read_until(b"\r\n\r\n", MAX_HEAD, self.connect_timeout)
        head = parse_head(raw, request=True)
        record.method = head.start[0][:32]
        try:
            target = request_target(head)
        except WireError as exc:
            raise _Refused(400, "request", str(exc)) from None
        record.host, record.port = _printable(target.host), target.port
        decision = self.policy.check_request(record.method, target.host, target.port,
                                             target.tunnel)
        if not decision.allowed:
            raise _Refused(403, decision.rule, decision.message)
        record.allowed, record.rule = True, decision.rule
        if self.byte_budget and self.bytes_used >= self.byte_budget:
            record.allowed = False
            raise _Refused(403, "egress_byte_budget", (
                f"the session's egress byte budget ({self.byte_budget} bytes) is spent; raise "
                "SandboxConfig.egress_byte_budget"))
        forwarded, body = b"", None
        if not target.tunnel:
            try:  # judged before any connection is made
                forwarded, body = forwarded_request(head, target), body_length(head, request=True)
            except WireError as exc:
                raise _Refused(400, "request", str(exc)) from None
        upstream.append(await self._connect(target, record))
        if target.tunnel:
            await self._tunnel(client, upstream[0], target, record)
        else:
            await self._forward(client, upstream[0], (forwarded, body), record)

    async def _connect(self, target: Target, record: EgressRecord) -> Channel:
        pinned = self.policy.pinned(target.host, target.port)
        if pinned is not None:
            address, port = pinned
        else:
            try:
                addresses = await asyncio.wait_for(self.resolver(target.host, target.port),
                                                   self.connect_timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                raise _Refused(502, "dns", f"{target.host} did not resolve: {exc}") from None
            verdict = self.policy.check_addresses(target.host, target.port, addresses)
            if not verdict.allowed or not addresses:
                record.allowed = False
                raise _Refused(403, verdict.rule, verdict.message or "no address")
            address, port = addresses[0], target.port
        loop = asyncio.get_running_loop()
        try:
            _, channel = await asyncio.wait_for(
                loop.create_connection(lambda: Channel(READ_LIMIT), address, port),
                self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise _Refused(502, record.rule, f"cannot connect to {target.host}:{target.port} "
                           f"({address}:{port}): {reason}") from None
        return channel

    async def _tunnel(
        self, client: Channel, upstream: Channel, target: Target, record: EgressRecord
    ) -> None:
        client.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        record.status = 200
        hello, sni = await read_client_hello(client, self.connect_timeout)
        if sni.lower().rstrip(".") != target.host.lower().rstrip("."):
            record.allowed, record.rule, record.status = False, "sni", None
            record.error = (f"the TLS handshake names {_printable(sni) or 'no server'}, not the "
                            f"CONNECT target {target.host}")
            return
        self._count(record, up=len(hello))
        upstream.write(hello)
        up = asyncio.ensure_future(client.relay_to(
            upstream, None, lambda n: self._count(record, up=n), self.idle_timeout))
        down = asyncio.ensure_future(upstream.relay_to(
            client, None, lambda n: self._count(record, down=n), self.idle_timeout))
        try:
            pending: set[asyncio.Future[None]] = {up, down}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    try:
                        task.result()
                    except ChannelClosed:
                        if not (client.lost or upstream.lost):
                            raise
                    # One side said all it will: pass that on, and stop at once if either
                    # side is gone altogether (a tunnel has no length to finish).
                    (upstream if task is up else client).write_eof()
                    if client.lost or upstream.lost:
                        return
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)

    async def _forward(
        self, client: Channel, upstream: Channel, request: tuple[bytes, int | None],
        record: EgressRecord,
    ) -> None:
        forwarded, request_body = request
        self._count(record, up=len(forwarded))
        upstream.write(forwarded)
        await copy_body(client, upstream, request_body, lambda n: self._count(record, up=n),
                        self.idle_timeout)
        while True:  # 1xx interim responses come before the real one
            raw = await upstream.read_until(b"\r\n\r\n", MAX_HEAD, self.idle_timeout)
            response = parse_head(raw, request=False)
            record.status = int(response.start[1])
            self._count(record, down=len(raw))
            if record.status >= 200 or record.status == 101:
                break
            client.write(raw)
        client.write(forwarded_response(response))
        length = body_length(response, request=False, method=record.method)
        await copy_body(upstream, client, length, lambda n: self._count(record, down=n),
                        self.idle_timeout)
        await client.drain(self.idle_timeout)

    def _count(self, record: EgressRecord, up: int = 0, down: int = 0) -> None:
        record.bytes_up += up
        record.bytes_down += down
        self.bytes_used += up + down
        if self.byte_budget and self.bytes_used > self.byte_budget:
            raise BudgetExhausted

    def _keep(self, record: EgressRecord) -> None:
        with self._lock:
            self._live.pop(record.id, None)
            if not (record.method or record.error):
                self._reported.pop(record.id, None)
                return
            if len(self._finished) >= self.max_records:
                self.dropped_records += 1
                self._reported.pop(record.id, None)
            else:
                self._finished.append(record)
        verdict = "allowed" if record.allowed else "DENIED"
        self.log.info("egress %s %s:%s %s [%s] %s", record.method, record.host, record.port,
                 verdict, record.rule, record.error)


async def _refuse(client: Channel, refusal: _Refused) -> None:
    """Answer with an error whose reason phrase names the setting, since HTTP clients show
    the reason in their exceptions (requests' ProxyError, urllib's HTTPError)."""
    text = _printable(refusal.message, 400)
    reason = ("Forbidden by codeact egress policy: " if refusal.status == 403 else
              f"{STATUS_TEXT.get(refusal.status, 'Error')} (codeact egress): ") + text
    body = f"codeact egress: {text}\n".encode()
    head = (f"HTTP/1.1 {refusal.status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            f"X-Codeact-Egress: denied; rule={refusal.rule}\r\n\r\n")
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        client.write(head.encode("latin-1", "replace") + body)
        await client.drain(5)


async def _resolve_dns(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _printable(text: str, limit: int = 255) -> str:
    """Text from the sandbox made safe for logs, terminals and reason phrases."""
    safe = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."

