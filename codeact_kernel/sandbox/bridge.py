"""A transparent byte relay between a frontend's sockets and a kernel's unix sockets.

ZMTP is the same over TCP and ipc, so a frontend speaking TCP can talk to a
kernel bound on ipc sockets through a plain copy of bytes: no message is
parsed, so the relay neither adds nor loses anything.  It uses asyncio
protocols (not streams) so that each chunk is forwarded in the callback that
received it, with transport flow control as back-pressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable
from pathlib import Path


class _Relay(asyncio.Protocol):
    """One end of a relayed connection: what it reads, its peer writes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Relay | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self._close_peer()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_peer()

    def pause_writing(self) -> None:
        # Our outgoing buffer is full: stop reading the side that fills it.
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def _close_peer(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _HostRelay(_Relay):
    """The frontend's end: it holds the frontend's bytes until the kernel end is linked."""

    def __init__(self, on_connect: Callable[[_HostRelay], None]) -> None:
        super().__init__()
        self._on_connect = on_connect

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self._on_connect(self)


class SocketBridge:
    """Accept frontend connections and relay each one to a kernel unix socket."""

    def __init__(self, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.kernel_gone = False
        self._servers: list[asyncio.AbstractServer] = []
        # Weak: a closed connection's relays are dropped with their transports.
        self._relays: weakref.WeakSet[_Relay] = weakref.WeakSet()
        self._links: set[asyncio.Task[None]] = set()

    async def listen(self, transport: str, ip: str, port: int, kernel_socket: Path) -> None:
        """Listen on a frontend endpoint (``tcp`` ip:port or ``ipc`` ip-port)."""
        loop = asyncio.get_running_loop()

        def start_link(host: _HostRelay) -> None:
            task = loop.create_task(self._link(host, kernel_socket))
            self._links.add(task)
            task.add_done_callback(self._links.discard)

        def accept() -> _HostRelay:
            return _HostRelay(start_link)

        if transport == "ipc":
            server = await loop.create_unix_server(accept, path=f"{ip}-{port}")
        else:
            server = await loop.create_server(accept, host=ip, port=port)
        self._servers.append(server)

    async def _link(self, host: _Relay, kernel_socket: Path) -> None:
        kernel = await self._connect_kernel(kernel_socket)
        if kernel is None or host.transport is None or host.transport.is_closing():
            host.close()
            if kernel is not None:
                kernel.close()
            return
        host.peer, kernel.peer = kernel, host
        self._relays.update((host, kernel))
        host.transport.resume_reading()

    async def _connect_kernel(self, path: Path) -> _Relay | None:
        # Frontends connect as soon as the launch returns, well before the kernel
        # has bound its sockets; to ZMQ the wait just looks like a slow peer.
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.connect_timeout
        while not self.kernel_gone and time.monotonic() < deadline:
            try:
                _, relay = await loop.create_unix_connection(_Relay, str(path))
                return relay
            except (FileNotFoundError, ConnectionRefusedError):
                await asyncio.sleep(0.01)
        return None

    async def close(self) -> None:
        """Stop accepting, and drop every relayed connection."""
        self.kernel_gone = True
        for server in self._servers:
            server.close()
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)
        for relay in list(self._relays):
            relay.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
