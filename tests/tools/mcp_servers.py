"""Starting the tests' real MCP servers: stdio entries, and an HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
STDIO_SERVER = HERE / "mcp_stdio_server.py"
HTTP_SERVER = HERE / "mcp_http_server.py"
# A loaded 2-core machine takes seconds to import the SDK in each server.
STARTUP = 90


def stdio_entry(name: str = "files", **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": [sys.executable, str(STDIO_SERVER)],
            "startup_timeout": STARTUP, **extra}


@contextmanager
def http_server(token: str = "") -> Iterator[str]:
    """Run the HTTP server on a free port; yields its /mcp URL; kills it after."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [sys.executable, str(HTTP_SERVER), str(port), *([token] if token else [])]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"the MCP HTTP server did not start: {err}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(10)
