"""A tiny OpenAI-compatible server on 127.0.0.1 that serves a queue of replies.

The agent reaches it through litellm's real HTTP code path (model
"openai/scripted", api_base=server.api_base), so everything but the model's
words is real. Replies name the model the request asked for, so litellm prices a
request to "openai/gpt-4o-mini" from its own table. Requests are recorded so tests can
inspect prompts, and ``fail_next`` makes the server answer errors (for retry tests).

A reply is a string (the message's text) or, for native function calling, what
``tool_calls(...)`` returns: the server then answers with real OpenAI ``tool_calls``,
whole or streamed as argument fragments (litellm's stream_chunk_builder joins them).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A reply: its text, a dict with text and tool calls, or an int: that HTTP error status.
Reply = str | dict[str, Any] | int


def call(name: str, arguments: Any = None, call_id: str | None = None) -> dict[str, Any]:
    """One function call; ``arguments`` is JSON-encoded unless it is already a string (so
    malformed JSON can be scripted)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return {"id": call_id, "name": name, "arguments": text}


def tool_calls(*calls: dict[str, Any], text: str = "") -> dict[str, Any]:
    """A reply holding ``calls`` (from ``call``), with optional text beside them."""
    numbered = [{**c, "id": c.get("id") or f"call_{i}_{id(c) % 10000}"}
                for i, c in enumerate(calls)]
    return {"content": text, "tool_calls": numbered}


class ScriptedLLMServer:
    def __init__(self, replies: list[Reply] | None = None) -> None:
        self.replies: deque[Reply] = deque(replies or [])
        self.requests: list[dict[str, Any]] = []
        self.fail_next: deque[int] = deque()
        self.delay = 0.0
        self.chunk_delay = 0.0  # seconds between a streamed reply's chunks
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def enqueue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def __enter__(self) -> ScriptedLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": [{"id": "scripted"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(body)
                if server.delay:
                    time.sleep(server.delay)
                if server.fail_next:
                    code = server.fail_next.popleft()
                    self._json(code, {"error": {"message": f"scripted failure {code}"}})
                    return
                if not server.replies:
                    self._json(500, {"error": {"message": "scripted server ran out of replies"}})
                    return
                reply = server.replies.popleft()
                if isinstance(reply, int):  # a scripted failure of this one request
                    self._json(reply, {"error": {"message": f"scripted failure {reply}"}})
                    return
                model = str(body.get("model") or "scripted")
                if body.get("stream"):
                    self._stream(reply, model)
                else:
                    self._json(200, _completion(reply, model))

            def _json(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: Reply, model: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                text, calls = _parts(reply)
                deltas: list[dict[str, Any]] = [
                    {"content": text[i : i + 16]} for i in range(0, len(text), 16)]
                for index, c in enumerate(calls):
                    deltas.append({"tool_calls": [{"index": index, "id": c["id"],
                                   "type": "function",
                                   "function": {"name": c["name"], "arguments": ""}}]})
                    args = c["arguments"]
                    deltas += [{"tool_calls": [{"index": index, "function": {
                        "arguments": args[i : i + 7]}}]} for i in range(0, len(args), 7)]
                for delta in deltas:
                    chunk = _chunk(delta, None, model)
                    try:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the client stopped reading (a cut reply)
                    time.sleep(server.chunk_delay)
                final = _chunk({}, "tool_calls" if calls else "stop", model)
                final["usage"] = _usage(text if not calls else json.dumps(reply))
                self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        return Handler


def _parts(reply: Reply) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(reply, str):
        return reply, []
    return str(reply.get("content") or ""), list(reply.get("tool_calls") or [])


def _usage(reply: str) -> dict[str, int]:
    completion = max(1, len(reply) // 4)
    return {"prompt_tokens": 100, "completion_tokens": completion, "total_tokens": 100 + completion}


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    text, calls = _parts(reply)
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]
    else:
        message["content"] = text
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message,
             "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": _usage(text if not calls else json.dumps(reply)),
    }


def _chunk(delta: dict[str, Any], finish: str | None, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
