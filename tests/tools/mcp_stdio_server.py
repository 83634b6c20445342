"""A real MCP server for the tests, built with the SDK's MCPServer, run over stdio.

    python mcp_stdio_server.py

Notes in memory, a city lookup with structured output, and tools that fail, crash
the server or hang, so the client's handling of each can be tested.
"""

from __future__ import annotations

import os
import sys
from typing import TypedDict

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

server = MCPServer("files", instructions="Notes kept in memory, and city facts.")
NOTES = {"todo": "buy milk", "ideas": "an MCP kernel"}


class City(TypedDict):
    name: str
    population: int
    districts: list[str]


class Stats(BaseModel):
    count: int
    mean: float


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def read_note(name: str) -> str:
    """Read the text of a note.

    Args:
        name: The note's name.
    """
    if name not in NOTES:
        raise ToolError(f"no note named {name!r}; notes: {', '.join(sorted(NOTES))}")
    return NOTES[name]


@server.tool(name="list-notes", annotations=ToolAnnotations(readOnlyHint=True))
def list_notes() -> list[str]:
    """The names of all notes."""
    return sorted(NOTES)


@server.tool(annotations=ToolAnnotations(destructiveHint=True))
def delete_note(name: str) -> str:
    """Delete a note for good.

    Args:
        name: The note to delete.
    """
    NOTES.pop(name, None)
    return f"deleted {name}"


@server.tool()
def city(name: str, min_population: int = 0) -> City:
    """Facts about a city.

    Args:
        name: The city.
        min_population: Only used to test defaults.
    """
    return {"name": name, "population": 2_100_000, "districts": ["Louvre", "Marais"]}


@server.tool()
def stats(values: list[float]) -> Stats:
    """Count and mean of numbers.

    Args:
        values: The numbers.
    """
    return Stats(count=len(values), mean=sum(values) / len(values))


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def crash() -> str:
    """Exit the server process at once, mid-call."""
    sys.stdout.flush()
    os._exit(3)


@server.tool()
async def sleep_forever() -> str:
    """Never answer."""
    await anyio.sleep_forever()
    return "unreachable"


if __name__ == "__main__":
    server.run()
