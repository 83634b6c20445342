"""A real MCP server for the tests, built with the SDK's MCPServer, over streamable HTTP.

    python mcp_http_server.py PORT [TOKEN]

Serves http://127.0.0.1:PORT/mcp. With TOKEN, every request must carry
"Authorization: Bearer TOKEN" (the client reads it from the host's environment).
"""

from __future__ import annotations

import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

server = MCPServer("weather")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def forecast(city: str, days: int = 2) -> list[int]:
    """Daily high temperatures for a city, in degrees Celsius.

    Args:
        city: The city.
        days: How many days ahead.
    """
    return [20 + (len(city) + i) % 5 for i in range(days)]


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def humidity(city: str) -> float:
    """Relative humidity now, between 0 and 1.

    Args:
        city: The city.
    """
    return 0.55


class RequireToken:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            auth = Request(scope).headers.get("authorization", "")
            if auth != f"Bearer {self.token}":
                response: Response = JSONResponse({"error": "bad token"}, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


if __name__ == "__main__":
    port = int(sys.argv[1])
    app: ASGIApp = server.streamable_http_app()
    if len(sys.argv) > 2:
        app = RequireToken(app, sys.argv[2])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
