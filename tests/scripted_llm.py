"""A tiny OpenAI-compatible server on 127.0.0.1 that serves a queue of replies.

The agent reaches it through litellm's real HTTP code path (model
"openai/scripted", api_base=server.api_base), so everything but the model's
words is real. Replies name the model the request asked for, so litellm prices a
request to "openai/gpt-4o-mini" from its own table. Requests are recorded so tests can
inspect prompts, and ``fail_next`` makes the server answer errors (for retry tests).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedLLMServer:
    def __init__(self, replies: list[str] | None = None) -> None:
        self.replies: deque[str] = deque(replies or [])
        self.requests: list[dict[str, Any]] = []
        self.fail_next: deque[int] = deque()
        self.delay = 0.0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def enqueue(self, *replies: str) -> None:
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

            def _stream(self, reply: str, model: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i in range(0, len(reply), 16):
                    chunk = _chunk({"content": reply[i : i + 16]}, None, model)
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                final = _chunk({}, "stop", model)
                final["usage"] = _usage(reply)
                self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        return Handler


def _usage(reply: str) -> dict[str, int]:
    completion = max(1, len(reply) // 4)
    return {"prompt_tokens": 100, "completion_tokens": completion, "total_tokens": 100 + completion}


def _completion(reply: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply},
             "finish_reason": "stop"}
        ],
        "usage": _usage(reply),
    }


def _chunk(delta: dict[str, Any], finish: str | None, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
