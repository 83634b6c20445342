"""A relay that re-signs every Jupyter message, filtering what the kernel sends.

The byte bridge (:mod:`.bridge`) is transparent, so the kernel must hold the frontend's
HMAC key, and whatever it sends reaches the frontend as it was sent. This relay parses
the message envelopes instead. Two keys: the frontend's, which never leaves the host
process, and the kernel's own. Messages from the frontend are checked against the
frontend's key (and against replays) and re-signed with the kernel's; messages from the
kernel are checked against the kernel's key, their MIME bundles are passed through the
output firewall, and they are re-signed with the frontend's. The kernel can still sign
anything with its own key, but the frontend only ever sees what the firewall let through.

Routing follows ZMQ's ROUTER/DEALER proxies: a frontend's identity rides in the message's
routing prefix, so replies and input requests find their way back. The kernel-side shell
and stdin sockets share one identity, as a Jupyter client's do, because the kernel routes
an input request with the identities of the shell request it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

import zmq
import zmq.asyncio

from ..render.firewall import OutputFirewall

DELIM = b"<IDS|MSG>"
REQUEST_CHANNELS = ("shell", "control", "stdin")
# What a frontend needs from iopub to show a cell run; comm messages are left out (a
# widget model names JavaScript modules the frontend would load), and so is anything
# unknown.
IOPUB_TYPES = {"status", "stream", "display_data", "execute_result", "update_display_data",
               "error", "clear_output", "execute_input", "shutdown_reply", "iopub_welcome"}
BUNDLE_TYPES = {"display_data", "execute_result", "update_display_data"}
# Signatures of frontend messages remembered to refuse replays (jupyter_client's size).
REPLAY_HISTORY = 1 << 16
SAFE_LINK = ("http://", "https://")


class Signer:
    """Signs and checks the four signed frames of a message with one key."""

    def __init__(self, key: bytes, scheme: str = "hmac-sha256") -> None:
        algorithm = scheme.split("-", 1)[-1]
        self.key = key
        self._auth = hmac.new(key, digestmod=getattr(hashlib, algorithm)) if key else None

    def sign(self, parts: list[bytes]) -> bytes:
        if self._auth is None:
            return b""
        h = self._auth.copy()
        for part in parts:
            h.update(part)
        return h.hexdigest().encode("ascii")

    def verify(self, signature: bytes, parts: list[bytes]) -> bool:
        return hmac.compare_digest(signature, self.sign(parts))


def split(frames: list[bytes]) -> tuple[list[bytes], bytes, list[bytes], list[bytes]] | None:
    """(routing prefix, signature, [header, parent, metadata, content], buffers), or None."""
    try:
        at = frames.index(DELIM)
    except ValueError:
        return None
    if len(frames) < at + 6:
        return None
    return frames[:at], frames[at + 1], frames[at + 2: at + 6], frames[at + 6:]


class SigningRelay:
    """Relay shell, control, stdin and iopub between a frontend and a kernel, re-signing."""

    def __init__(self, frontend: Signer, kernel: Signer, firewall: OutputFirewall,
                 log: logging.Logger | None = None) -> None:
        self.frontend, self.kernel, self.firewall = frontend, kernel, firewall
        self.log = log or logging.getLogger(__name__)
        self.context = zmq.asyncio.Context()
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, frontend_urls: dict[str, str], kernel_urls: dict[str, str]) -> None:
        """Bind the frontend's endpoints, connect to the kernel's, and start relaying."""
        identity = secrets.token_hex(8).encode()
        for name in REQUEST_CHANNELS:
            outer = self._socket(zmq.ROUTER)
            outer.bind(frontend_urls[name])
            inner = self._socket(zmq.DEALER)
            if name != "control":
                inner.setsockopt(zmq.IDENTITY, identity)
            inner.connect(kernel_urls[name])
            self._pump(outer, inner, self._from_frontend)
            self._pump(inner, outer, partial(self._from_kernel, iopub=False))
        publisher = self._socket(zmq.PUB)
        publisher.bind(frontend_urls["iopub"])
        subscriber = self._socket(zmq.SUB)
        subscriber.setsockopt(zmq.SUBSCRIBE, b"")
        subscriber.connect(kernel_urls["iopub"])
        self._pump(subscriber, publisher, partial(self._from_kernel, iopub=True))

    def _socket(self, kind: int) -> zmq.asyncio.Socket:
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        return sock

    def _pump(self, source: zmq.asyncio.Socket, sink: zmq.asyncio.Socket,
              convert: Callable[[list[bytes]], list[bytes] | None]) -> None:
        async def run() -> None:
            while True:
                frames = await source.recv_multipart()
                try:
                    out = convert(frames)
                except Exception as exc:  # one bad message must not stop the channel
                    self.log.warning("dropped a message that could not be relayed: %s", exc)
                    continue
                if out is not None:
                    await sink.send_multipart(out)

        self._tasks.append(asyncio.ensure_future(run()))

    def _from_frontend(self, frames: list[bytes]) -> list[bytes] | None:
        parsed = split(frames)
        if parsed is None:
            self.log.warning("dropped a frontend message without a Jupyter envelope")
            return None
        prefix, signature, parts, buffers = parsed
        if not self.frontend.verify(signature, parts):
            self.log.warning("dropped a frontend message with a bad signature")
            return None
        if self.frontend.key:
            if signature in self._seen:
                self.log.warning("dropped a replayed frontend message")
                return None
            self._seen[signature] = None
            if len(self._seen) > REPLAY_HISTORY:
                self._seen.popitem(last=False)
        return [*prefix, DELIM, self.kernel.sign(parts), *parts, *buffers]

    def _from_kernel(self, frames: list[bytes], iopub: bool) -> list[bytes] | None:
        parsed = split(frames)
        if parsed is None:
            return None
        prefix, signature, parts, buffers = parsed
        if not self.kernel.verify(signature, parts):
            self.log.warning("dropped a kernel message with a bad signature")
            return None
        header = json.loads(parts[0])
        msg_type = header.get("msg_type") if isinstance(header, dict) else None
        content = self._filter(msg_type, parts[3], iopub)
        if content is None:
            self.log.debug("dropped a %r message from the kernel", msg_type)
            return None
        parts = [*parts[:3], content]
        return [*prefix, DELIM, self.frontend.sign(parts), *parts, *buffers]

    def _filter(self, msg_type: Any, raw: bytes, iopub: bool) -> bytes | None:
        """The content to pass on (filtered where it holds bundles), or None to drop it."""
        if iopub and msg_type not in IOPUB_TYPES:
            return None
        if msg_type not in BUNDLE_TYPES and msg_type not in (
                "inspect_reply", "execute_reply", "kernel_info_reply"):
            return raw
        content = json.loads(raw)
        if not isinstance(content, dict):
            return None
        if msg_type in BUNDLE_TYPES or msg_type == "inspect_reply":
            self._filter_bundle(content)
        elif msg_type == "execute_reply":
            payloads = content.get("payload")
            content["payload"] = [self._filter_bundle(p) for p in payloads
                                  if isinstance(p, dict)] if isinstance(payloads, list) else []
        else:
            links = content.get("help_links")
            content["help_links"] = [
                link for link in (links if isinstance(links, list) else [])
                if isinstance(link, dict)
                and str(link.get("url", "")).strip().lower().startswith(SAFE_LINK)
            ]
        return json.dumps(content).encode()

    def _filter_bundle(self, content: dict[str, Any]) -> dict[str, Any]:
        if "data" in content:
            data = content["data"] if isinstance(content["data"], dict) else {}
            filtered = self.firewall.filter_bundle(data, content.get("metadata"))
            content["data"], content["metadata"] = filtered.data, filtered.metadata
        return content

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, zmq.ZMQError):
                await task
        self.context.destroy(linger=0)

