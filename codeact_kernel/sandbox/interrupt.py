"""Interrupts as messages, confirmed by the kernel's reply.

A SIGINT delivered to bubblewrap kills the sandbox, so sandboxed kernels are
interrupted with an ``interrupt_request`` on their control channel. jupyter_client
sends it fire-and-forget on an event-loop socket; a request that sits unread (an
event-loop socket or a kernel's control stream that missed its wake-up) leaves the
cell running to its deadline. Here the request goes out on a plain socket, the
kernel's ``interrupt_reply`` is awaited, and a kernel that has not answered within
``NUDGE_AFTER`` is sent a ``kernel_info_request`` on the same channel: a second
arrival wakes a reader that missed the first, and unlike a second interrupt it does
not raise KeyboardInterrupt twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import zmq
    from jupyter_client.session import Session

NUDGE_AFTER = 1.0
# The kernel holds the HMAC key, so its replies are hostile: an interrupt_reply is a few
# hundred bytes, and a bigger message drops the connection instead of filling memory.
MAX_REPLY_BYTES = 64 * 1024
# An interrupt_reply comes within milliseconds from a kernel whose control thread runs;
# one that holds the GIL in a C call answers only once the call returns.
REPLY_WAIT = 3.0


def control_endpoint(info: Mapping[str, Any]) -> str:
    """The control socket's address in a kernel's connection ``info``."""
    sep = "-" if info["transport"] == "ipc" else ":"
    return f"{info['transport']}://{info['ip']}{sep}{info['control_port']}"


async def confirmed_interrupt(connection: Any, timeout: float = REPLY_WAIT) -> bool:
    """``send_interrupt_request``, from a worker thread, to the kernel ``connection``
    (a jupyter_client kernel manager or client) reaches; True once the kernel confirmed."""
    session = connection.session
    return bool(await asyncio.get_running_loop().run_in_executor(
        None, send_interrupt_request, control_endpoint(connection.get_connection_info()),
        session.key, session.signature_scheme, timeout))


def send_interrupt_request(endpoint: str, key: bytes, scheme: str, timeout: float) -> bool:
    """Send one signed interrupt_request to ``endpoint`` (a kernel's control socket);
    True once its interrupt_reply came, False if none came within ``timeout`` seconds.

    Blocking: call it from a worker thread.
    """
    import zmq
    from jupyter_client.session import Session

    session = Session(key=key, signature_scheme=scheme)
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
        sock.setsockopt(zmq.RCVHWM, 16)
        sock.connect(endpoint)
        request = session.send(sock, "interrupt_request", {})
        if request is None:  # Session.send sends nothing to a socket it is not given
            return False
        deadline = time.monotonic() + timeout
        nudge_at: float | None = time.monotonic() + NUDGE_AFTER
        while (now := time.monotonic()) < deadline:
            if nudge_at is not None and now >= nudge_at:
                session.send(sock, "kernel_info_request", {})
                nudge_at = None
            wait = min(deadline, nudge_at or deadline) - now
            if sock.poll(max(1, int(wait * 1000))) and _is_reply_to(session, sock, request):
                return True
        return False
    finally:
        ctx.destroy(linger=0)


def _is_reply_to(session: Session, sock: zmq.Socket[Any], request: dict[str, Any]) -> bool:
    """Whether the next message on ``sock`` is the reply to ``request`` (a bad or
    unsigned message, or the nudge's kernel_info_reply, is not)."""
    try:
        _, frames = session.feed_identities(sock.recv_multipart())
        reply = session.deserialize(frames)
    except Exception:
        return False
    parent = reply.get("parent_header") or {}
    return bool(reply.get("msg_type") == "interrupt_reply"
                and parent.get("msg_id") == request["header"]["msg_id"])
