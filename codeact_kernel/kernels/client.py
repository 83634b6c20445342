"""The host's kernel client, bounded against whatever the kernel sends.

jupyter_client deserialises whole messages, and libzmq queues whole messages before
anyone reads them. So this client's sockets carry ``MAXMSGSIZE`` (libzmq drops the
connection rather than buffer a larger message) and a small receive high-water mark
(a slow reader pushes back into the kernel's own send queue, which the sandbox's
memory limit bounds). A dropped connection is not re-made by libzmq, so each
channel is watched for disconnects and re-opened by the session.

iopub is read raw: the small header and parent frames decide, before the content is
parsed, whether a message is wanted at all, so a flood past the budget costs the
host a length check per message, not a JSON parse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from traitlets import Int
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger(__name__)

WATCHED = ("shell", "iopub", "stdin")
# Header, parent header and metadata frames of real messages are well under 1 KiB.
MAX_ENVELOPE_FRAME = 64 * 1024
WELCOME_WAIT = 2.0

# (msg_type, parent msg_id, content bytes) -> whether to parse and keep the message.
Wants = Callable[[str, "str | None", int], bool]


class BoundedKernelClient(AsyncKernelClient):
    """An AsyncKernelClient whose sockets refuse oversized messages and queue few."""

    max_message_bytes = Int(
        32 * 1024 * 1024,
        help="Largest message accepted from the kernel on iopub, shell and stdin (ZMQ "
        "MAXMSGSIZE). libzmq drops the connection rather than buffer a larger one; the "
        "execute reports the lost messages and the channel is re-opened.",
    ).tag(config=True)
    receive_hwm = Int(
        4,
        help="Messages the host's client queues per channel before it stops reading (ZMQ "
        "RCVHWM); the kernel's own send queue, inside the sandbox's memory limit, holds "
        "the rest. Bounds what waits unread to about receive_hwm x max_message_bytes.",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._monitors: dict[str, zmq.Socket[bytes]] = {}

    def _context_default(self) -> zmq.asyncio.Context:
        context = super()._context_default()
        # Defaults for every socket made from this context, so they hold before connect.
        context.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        context.setsockopt(zmq.RCVHWM, self.receive_hwm)
        return context

    def start_channels(self, *args: Any, **kwargs: Any) -> None:
        super().start_channels(*args, **kwargs)
        for name in WATCHED:
            self._watch(name)

    def stop_channels(self) -> None:
        for monitor in self._monitors.values():
            monitor.close(0)
        self._monitors = {}
        super().stop_channels()

    # ---- lost connections ------------------------------------------------------------

    def _watch(self, name: str) -> None:
        channel = getattr(self, f"_{name}_channel", None)
        if channel is None or channel.socket is None or name in self._monitors:
            return
        address = f"inproc://codeact-monitor-{id(self)}-{name}-{time.monotonic_ns()}"
        channel.socket.monitor(address, zmq.EVENT_DISCONNECTED)
        # A plain socket on the same context: drained without awaiting.
        monitor: zmq.Socket[bytes] = zmq.Context.shadow(self.context.underlying).socket(zmq.PAIR)
        monitor.connect(address)
        self._monitors[name] = monitor

    def loss_cause(self) -> str:
        """Why messages go missing on these channels, for the execution's note."""
        return (f"one was over the {self.max_message_bytes:,} byte limit "
                "(BoundedKernelClient.max_message_bytes) or the channel was closed; it was "
                "re-opened")

    def lost_channels(self) -> set[str]:
        """The channels whose connection dropped since the last call.

        libzmq drops a connection that carries a message over MAXMSGSIZE and does not
        re-make it; a kernel restart drops them too (those do reconnect).
        """
        lost = set()
        for name, monitor in self._monitors.items():
            while monitor.poll(0):
                event = parse_monitor_message(monitor.recv_multipart())
                if event["event"] == zmq.EVENT_DISCONNECTED:
                    lost.add(name)
        return lost

    async def reopen(self, names: set[str], welcome: bool = True) -> None:
        """Replace the sockets of ``names`` with fresh connections to the same kernel;
        with ``welcome``, wait (briefly) until a new iopub subscription is live."""
        for name in sorted(names & set(WATCHED)):
            channel = getattr(self, f"_{name}_channel", None)
            if channel is None:
                continue
            old = self._monitors.pop(name, None)
            if old is not None:
                old.close(0)
            channel.close()
            setattr(self, f"_{name}_channel", None)
            getattr(self, f"{name}_channel").start()  # the property makes a new socket
            self._watch(name)
        if "iopub" in names and welcome:
            try:
                await asyncio.wait_for(self._await_welcome(), WELCOME_WAIT)
            except asyncio.TimeoutError:
                log.warning("no iopub_welcome within %ss after re-opening iopub", WELCOME_WAIT)

    async def _await_welcome(self) -> None:
        # A new subscription takes a moment to reach the kernel; ipykernel greets it.
        # Read raw: whatever else arrives meanwhile is skipped unparsed.
        while True:
            try:
                if await self.read_iopub(lambda kind, _, __: kind == "iopub_welcome"):
                    return
            except zmq.ZMQError:
                raise
            except Exception:  # a malformed message is not the greeting
                continue

    # ---- raw reads ---------------------------------------------------------------------

    async def read_iopub(self, wants: Wants) -> dict[str, Any] | None:
        """The next iopub message if ``wants`` it, parsed; None when it was skipped
        unparsed. A malformed message raises (ValueError and the like), as
        jupyter_client's own reads do."""
        socket = self.iopub_channel.socket
        frames = await socket.recv_multipart(copy=False)
        _, parts = self.session.feed_identities(frames, copy=False)
        msg_type, parent_id = _envelope(parts)
        if not wants(msg_type, parent_id, sum(len(part) for part in parts[4:])):
            return None
        msg: dict[str, Any] = self.session.deserialize(parts, content=True, copy=False)
        return msg


def _envelope(parts: list[Any]) -> tuple[str, str | None]:
    """msg_type and parent msg_id from the header frames alone, never the content."""
    if len(parts) < 5:
        raise ValueError("a message needs signature, header, parent, metadata and content")
    if len(parts[1]) > MAX_ENVELOPE_FRAME or len(parts[2]) > MAX_ENVELOPE_FRAME:
        raise ValueError("oversized message header")
    header = json.loads(parts[1].bytes)
    parent = json.loads(parts[2].bytes)
    if not isinstance(header, dict) or not isinstance(parent, dict):
        raise TypeError("the header frames must be JSON objects")
    parent_id = parent.get("msg_id")
    return str(header["msg_type"]), parent_id if isinstance(parent_id, str) else None
