"""A small client for the Jupyter kernels API: REST to manage, a websocket to talk.

Jupyter Server, Jupyter Kernel Gateway and Jupyter Enterprise Gateway all
serve ``/api/kernels`` (start, interrupt, restart, delete) and
``/api/kernels/{id}/channels``, a websocket carrying the kernel's messages as
JSON with a ``channel`` key. jupyter_server's own gateway client needs a
running server and a process-wide singleton config, so this is a few hundred
lines on tornado, which ipykernel already brings.

Every call is bounded by a timeout. Errors are :class:`GatewayError` with a
message that says what to check (URL, token, kernel name).
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections import deque
from typing import Any
from urllib.parse import quote

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from ..errors import GatewayError

# The default of GatewayKernelManager.max_message_bytes (tornado's own is 10 MiB):
# outputs (images, big DataFrames' HTML) can be large, and each message is parsed whole.
MAX_INCOMING_MESSAGE = 32 * 1024 * 1024
# The default of GatewayKernelManager.max_backlog_bytes: unread messages held per channel.
MAX_BACKLOG = 64 * 1024 * 1024
# The kernel states a gateway announces on iopub when the kernel is gone or replaced.
LOST_STATES = ("restarting", "autorestarting", "dead")


class GatewayClient:
    """REST calls to one gateway, with its token (sent as ``Authorization: token ...``)."""

    def __init__(
        self, url: str, token: str = "", *, token_source: str = "", request_timeout: float = 20.0,
        validate_cert: bool = True,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise GatewayError(f"gateway URL {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.token = token
        self.token_source = token_source or "the configured token"
        self.request_timeout = request_timeout
        self.validate_cert = validate_cert
        self.http = AsyncHTTPClient(force_instance=True)

    def close(self) -> None:
        self.http.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        return headers

    async def request(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> tuple[int, Any]:
        """(HTTP status, parsed JSON body or None); GatewayError if unreachable or refused."""
        limit = self.request_timeout if timeout is None else timeout
        payload = json.dumps(body) if body is not None else ("" if method == "POST" else None)
        request = HTTPRequest(
            self.url + path, method=method, headers=self._headers(), body=payload,
            connect_timeout=min(limit, 10.0), request_timeout=limit,
            validate_cert=self.validate_cert,
        )
        try:
            # Outer bound too: DNS resolution is not covered by tornado's timeouts.
            response = await asyncio.wait_for(
                self.http.fetch(request, raise_error=False), limit + 5
            )
        except (OSError, asyncio.TimeoutError, HTTPClientError) as exc:
            raise self._unreachable(exc) from exc
        if response.code == 599:  # tornado's code for "no HTTP response": refused, timed out
            raise self._unreachable(response.error)
        if response.code in (401, 403):
            raise GatewayError(
                f"the gateway at {self.url} refused the request (HTTP {response.code}): "
                + (f"the token from {self.token_source} is not accepted" if self.token else
                   f"no token was sent; set {self.token_source}")
            )
        try:
            data = json.loads(response.body) if response.body else None
        except ValueError:
            data = None
        return response.code, data

    def _unreachable(self, exc: object) -> GatewayError:
        return GatewayError(
            f"cannot reach the Jupyter gateway at {self.url}: {exc or 'no response'} "
            "(is it running, and is the URL right?)"
        )

    async def kernel_names(self) -> list[str]:
        code, data = await self.request("GET", "/api/kernelspecs")
        specs = data.get("kernelspecs") if code == 200 and isinstance(data, dict) else None
        return sorted(specs) if isinstance(specs, dict) else []

    async def start_kernel(self, name: str, env: dict[str, str], timeout: float) -> str:
        """Start a kernel; its id. The call lasts as long as the gateway's launch."""
        body: dict[str, Any] = {"name": name}
        if env:
            body["env"] = env
        code, data = await self.request("POST", "/api/kernels", body, timeout=timeout)
        if code in (200, 201) and isinstance(data, dict) and isinstance(data.get("id"), str):
            return str(data["id"])
        names = await self.kernel_names()
        if names and name not in names:
            raise GatewayError(
                f"the gateway at {self.url} has no kernel named {name!r}; it has: "
                + ", ".join(names)
            )
        raise GatewayError(
            f"the gateway at {self.url} could not start kernel {name!r} (HTTP {code}): "
            + _message(data)
        )

    async def kernel_model(self, kernel_id: str, timeout: float | None = None) -> Any:
        """The kernel's model, or None if the gateway no longer has it."""
        code, data = await self.request("GET", f"/api/kernels/{quote(kernel_id)}",
                                        timeout=timeout)
        return data if code == 200 else None

    async def interrupt(self, kernel_id: str) -> None:
        code, data = await self.request("POST", f"/api/kernels/{quote(kernel_id)}/interrupt")
        if code not in (200, 204):
            raise GatewayError(
                f"the gateway could not interrupt kernel {kernel_id} (HTTP {code}): "
                + _message(data)
            )

    async def restart(self, kernel_id: str, timeout: float) -> bool:
        """Restart in place; False when the gateway could not (it lost the kernel: Kernel
        Gateway then answers 500, not 404). GatewayError only if it cannot be reached."""
        code, _ = await self.request(
            "POST", f"/api/kernels/{quote(kernel_id)}/restart", timeout=timeout
        )
        return code == 200

    async def delete(self, kernel_id: str) -> None:
        await self.request("DELETE", f"/api/kernels/{quote(kernel_id)}")

    async def connect(self, kernel_id: str, timeout: float,
                      max_message_bytes: int = MAX_INCOMING_MESSAGE,
                      max_backlog_bytes: int = MAX_BACKLOG) -> GatewayChannels:
        """Open the kernel's channels websocket; tornado closes it rather than read a
        message over ``max_message_bytes``, and each channel holds at most
        ``max_backlog_bytes`` unread."""
        session = Session()
        url = (
            "ws" + self.url[len("http"):]
            + f"/api/kernels/{quote(kernel_id)}/channels?session_id={session.session}"
        )
        request = HTTPRequest(url, headers=self._headers(), connect_timeout=timeout,
                              request_timeout=timeout, validate_cert=self.validate_cert)
        try:
            ws = await asyncio.wait_for(
                websocket_connect(request, max_message_size=max_message_bytes), timeout + 5
            )
        except HTTPClientError as exc:
            if exc.code in (401, 403):
                raise GatewayError(f"the gateway at {self.url} refused the websocket "
                                   f"(HTTP {exc.code}); check {self.token_source}") from exc
            raise GatewayError(f"cannot open the channels of kernel {kernel_id} at "
                               f"{self.url}: {exc}") from exc
        except (OSError, asyncio.TimeoutError) as exc:
            raise self._unreachable(exc) from exc
        return GatewayChannels(ws, session, max_message_bytes, max_backlog_bytes)


def _message(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("message") or data.get("reason") or "no details")[:500]
    return "no details"


class Backlog:
    """The unread messages of one channel, at most ``max_bytes`` of them (as received).

    The websocket is read as long as the event loop runs, also while nobody consumes
    (the agent awaiting its model), so a kernel that floods would otherwise pile up in
    host memory. ZMQ bounds a local kernel's channels the same way (RCVHWM). Past the
    bound the oldest are dropped: stale output of a past cell goes first, and the newest
    (the end of the cell being read, its idle status) stays.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        # Dropped since the reader last took the counts: (messages, bytes).
        self.dropped = (0, 0)
        self._items: deque[tuple[dict[str, Any], int]] = deque()
        self._ready = asyncio.Event()

    def put(self, msg: dict[str, Any], size: int) -> None:
        while self._items and self.bytes + size > self.max_bytes:
            gone = self._items.popleft()[1]
            self.bytes -= gone
            self.dropped = (self.dropped[0] + 1, self.dropped[1] + gone)
        self._items.append((msg, size))
        self.bytes += size
        self._ready.set()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    def get_nowait(self) -> dict[str, Any]:
        if not self._items:
            raise asyncio.QueueEmpty
        msg, size = self._items.popleft()
        self.bytes -= size
        if not self._items:
            self._ready.clear()
        return msg

    async def get(self) -> dict[str, Any]:
        while not self._items:
            await self._ready.wait()
        return self.get_nowait()

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0
        self._ready.clear()


def _parent_id(msg: dict[str, Any]) -> Any:
    return (msg.get("parent_header") or {}).get("msg_id")


def decode_binary_message(data: bytes) -> dict[str, Any]:
    """A message in jupyter_server's binary websocket form: a count, offsets, then the JSON
    and the buffers."""
    (count,) = struct.unpack("!I", data[:4])
    offsets = [*struct.unpack(f"!{count}I", data[4:4 + 4 * count]), len(data)]
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(count)]
    msg: dict[str, Any] = json.loads(parts[0])
    msg["buffers"] = parts[1:]
    return msg


class GatewayChannels:
    """The kernel's channels over one websocket, shaped like the part of jupyter_client's
    AsyncKernelClient that KernelSession uses."""

    def __init__(self, ws: WebSocketClientConnection, session: Session,
                 max_message_bytes: int = MAX_INCOMING_MESSAGE,
                 max_backlog_bytes: int = MAX_BACKLOG) -> None:
        self.ws = ws
        self.session = session
        self.max_message_bytes = max_message_bytes
        self.queues: dict[str, Backlog] = {
            name: Backlog(max_backlog_bytes) for name in ("shell", "iopub", "stdin", "control")
        }
        self.sent: set[str] = set()
        # Why the kernel is gone or was replaced, as the websocket told us.
        self.lost: str | None = None
        # The gateway's own restarter is relaunching the kernel (it died by itself).
        self.autorestarting = False
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                self.lost = self.lost or (
                    f"the kernel's websocket closed (code {self.ws.close_code}): the gateway "
                    "ended it, or a message from the kernel was over the "
                    f"{self.max_message_bytes:,} byte limit "
                    "(GatewayKernelManager.max_message_bytes)"
                )
                return
            try:
                msg = decode_binary_message(raw) if isinstance(raw, bytes) else json.loads(raw)
            except (ValueError, struct.error):
                continue  # one garbled message must not take the channels down
            channel = str(msg.get("channel"))
            queue = self.queues.get(channel)
            if queue is None:
                continue
            if channel == "iopub":
                self._watch(msg)
            elif _parent_id(msg) not in self.sent:
                continue  # a reply to nothing we asked: forged, and never read
            queue.put(msg, len(raw))

    def _watch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        content = msg.get("content") or {}
        state = content.get("execution_state")
        if kind == "status" and state in LOST_STATES:
            self.lost = f"the gateway reported the kernel {state}"
            self.autorestarting = state != "dead"
        elif kind == "shutdown_reply" and _parent_id(msg) not in self.sent:
            self.lost = "the kernel was shut down by someone else (on the gateway)"

    def _send(self, channel: str, msg_type: str, content: dict[str, Any],
              parent: dict[str, Any] | None = None) -> str:
        msg = self.session.msg(msg_type, content, parent=parent)
        msg["channel"] = channel
        msg["buffers"] = []
        self.ws.write_message(json.dumps(msg, default=json_default))
        msg_id: str = msg["header"]["msg_id"]
        self.sent.add(msg_id)
        return msg_id

    def execute(
        self, code: str, silent: bool = False, store_history: bool = True,
        user_expressions: dict[str, str] | None = None, allow_stdin: bool = False,
        stop_on_error: bool = True,
    ) -> str:
        return self._send("shell", "execute_request", {
            "code": code, "silent": silent, "store_history": store_history,
            "user_expressions": user_expressions or {}, "allow_stdin": allow_stdin,
            "stop_on_error": stop_on_error,
        })

    def input(self, value: str) -> None:
        self._send("stdin", "input_reply", {"value": value})

    async def get_shell_msg(self) -> dict[str, Any]:
        return await self.queues["shell"].get()

    async def get_iopub_msg(self) -> dict[str, Any]:
        return await self.queues["iopub"].get()

    async def get_stdin_msg(self) -> dict[str, Any]:
        return await self.queues["stdin"].get()

    async def wait_for_ready(self, timeout: float) -> None:
        """Until kernel_info is answered on shell AND its status is seen on iopub.

        Asked again every second, as jupyter_client does. The iopub check
        matters after a (re)start: the gateway's subscription to a new kernel
        may lag its shell connection, and output published before it is lost.
        """
        deadline = time.monotonic() + timeout
        asked: set[str] = set()
        replied = False
        while True:
            if self.lost is not None:
                raise RuntimeError(self.lost)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"the kernel did not answer kernel_info within {timeout:g}s")
            asked.add(self._send("shell", "kernel_info_request", {}))
            end = time.monotonic() + min(1.0, remaining)
            replied = replied or await self._answered("shell", asked, end)
            if replied and await self._answered("iopub", asked, end):
                self._drain("iopub")
                return

    async def _answered(self, channel: str, asked: set[str], end: float) -> bool:
        """Whether a message answering one of ``asked`` arrives on ``channel`` by ``end``."""
        try:
            while (left := end - time.monotonic()) > 0:
                msg = await asyncio.wait_for(self.queues[channel].get(), left)
                if _parent_id(msg) in asked:
                    return True
        except asyncio.TimeoutError:
            pass
        return False

    def _drain(self, channel: str) -> None:
        self.queues[channel].clear()

    def take_dropped(self) -> dict[str, tuple[int, int]]:
        """The channels whose backlog dropped messages since the last call, each with
        how many and their bytes; the counts start again from zero."""
        dropped = {}
        for name, queue in self.queues.items():
            if queue.dropped[0]:
                dropped[name] = queue.dropped
                queue.dropped = (0, 0)
        return dropped

    def loss_cause(self) -> str:
        """Why messages go missing on these channels, for the execution's note."""
        bound = next(iter(self.queues.values())).max_bytes
        return (f"the host read them more slowly than the kernel sent, and the unread ones "
                f"passed the {bound:,} byte bound (GatewayKernelManager.max_backlog_bytes): "
                "the oldest were dropped")

    def stop_channels(self) -> None:
        self._reader.cancel()
        self.ws.close()
