"""One end of a proxied connection: read to parse, then relay straight through.

asyncio streams cost the proxy half its throughput (a coroutine, a buffer
copy and a drain per chunk). A Channel is a Protocol with two modes: it
buffers what arrives while the proxy parses a head, and once the proxy knows
how many bytes may pass, each chunk is written to the peer from the callback
that received it, with transport flow control as back-pressure, as in
codeact_kernel/sandbox/bridge.py.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

Counter = Callable[[int], None]
WRITE_BUFFER = 1024 * 1024


class ChannelClosed(Exception):
    """The peer closed before the bytes the proxy waited for arrived."""


class Channel(asyncio.Protocol):
    """A connection's end: ``read_*`` for heads, :meth:`relay_to` for bodies and tunnels."""

    def __init__(self, limit: int, on_connect: Callable[[Channel], None] | None = None) -> None:
        self.limit = limit
        self.on_connect = on_connect
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost = False
        self.last_activity = time.monotonic()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._writable: asyncio.Future[None] | None = None
        self._write_blocked = False
        # Relay state: where arriving bytes go, how many may, and who waits for the end.
        self._dst: Channel | None = None
        self._left: int | None = None
        self._count: Counter | None = None
        self._done: asyncio.Future[None] | None = None
        self.source: Channel | None = None  # whose reading pauses when we cannot write

    # ---- protocol callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # asyncio's default (64 KiB) pauses the source after every 256 KiB chunk it reads;
        # a few chunks of slack keep both sockets busy at a bounded cost per connection.
        transport.set_write_buffer_limits(high=WRITE_BUFFER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WRITE_BUFFER)
        if self.on_connect is not None:
            self.on_connect(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        if self._dst is not None:
            self._pass(data)
            return
        self.buffer += data
        if len(self.buffer) > self.limit and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        self._end_relay(None)
        return True  # keep our writing side open: the peer may still send

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = self.lost = True
        self._wake()
        self._end_relay(None)
        if self.source is not None:  # nobody left to pass the source's bytes to
            self.source._end_relay(ChannelClosed("the receiving side closed"))
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._write_blocked = True
        if self.source is not None and self.source.transport is not None:
            self.source.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_blocked = False
        if self.source is not None and self.source.transport is not None:
            self.source.transport.resume_reading()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # ---- parse mode --------------------------------------------------------------------------

    async def read_until(self, separator: bytes, limit: int, timeout: float) -> bytes:
        """Bytes up to and including ``separator``; ValueError past ``limit`` bytes."""
        while True:
            end = self.buffer.find(separator)
            if end >= 0:
                return self._take(end + len(separator))
            if len(self.buffer) > limit:
                raise ValueError(f"no {separator!r} within {limit} bytes")
            await self._more(timeout)

    async def read_exactly(self, size: int, timeout: float) -> bytes:
        while len(self.buffer) < size:
            await self._more(timeout)
        return self._take(size)

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        if self._paused and len(self.buffer) <= self.limit and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def _more(self, timeout: float) -> None:
        if self.eof:
            raise ChannelClosed("the connection closed early")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._waiter, timeout)
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ---- writing -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        if self._write_blocked and self.transport is not None and not self.transport.is_closing():
            self._writable = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self._writable, timeout)

    def write_eof(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.transport.can_write_eof():
                self.transport.write_eof()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # ---- relay mode ------------------------------------------------------------------------------

    async def relay_to(
        self, dst: Channel, length: int | None, count: Counter, idle_timeout: float
    ) -> None:
        """Pass ``length`` bytes (None: until EOF) to ``dst`` as they arrive, counting each
        chunk first (``count`` may raise to stop). ChannelClosed if EOF comes too early."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._dst, self._left, self._count = dst, length, count
        dst.source = self
        if dst._write_blocked and self.transport is not None:
            self.transport.pause_reading()  # dst was already full: wait for its resume
        if self.buffer:
            buffered, self.buffer = bytes(self.buffer), bytearray()
            self._pass(buffered)
        if self._paused and self.transport is not None and not self._done.done():
            self._paused = False
            if not dst._write_blocked:
                self.transport.resume_reading()
        if self.eof:
            self._end_relay(None)
        try:
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(self._done), idle_timeout)
                    return
                except asyncio.TimeoutError:
                    quiet = time.monotonic() - max(self.last_activity, dst.last_activity)
                    if quiet >= idle_timeout:
                        raise
        finally:
            self._dst = self._count = None
            dst.source = None
            if not self._done.done():
                self._done.cancel()
            if dst._write_blocked and self.transport is not None:
                self.transport.resume_reading()  # paused for dst; parse mode has its own limit

    def _pass(self, data: bytes) -> None:
        assert self._dst is not None and self._count is not None
        if self._dst.lost:
            self._end_relay(ChannelClosed("the receiving side closed"))
            return
        if self._left is not None and len(data) >= self._left:
            data, rest = data[: self._left], data[self._left:]
            self.buffer += rest  # the next message's bytes wait for parse mode
        try:
            self._count(len(data))
        except Exception as exc:
            self._end_relay(exc)
            return
        self._dst.write(data)
        if self._left is not None:
            self._left -= len(data)
            if self._left == 0:
                self._end_relay(None, complete=True)

    def _end_relay(self, exc: Exception | None, complete: bool = False) -> None:
        done = self._done
        if done is None or done.done():
            return
        if self._left is not None and self._left > 0 and exc is None and not complete:
            exc = ChannelClosed(f"the connection closed with {self._left} bytes to come")
        self._dst = None
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(None)
