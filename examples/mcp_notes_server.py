"""A small MCP server to try codeact's MCP support with: notes kept in a JSON file.

    python examples/mcp_notes_server.py                 # stdio (codeact starts it)
    python examples/mcp_notes_server.py --http 8765     # streamable HTTP on 127.0.0.1

Then, from the repository's root:

    codeact run "Summarize my notes, then delete the one about milk" \\
        --mcp '{"name": "notes", "command": ["python", "examples/mcp_notes_server.py"]}'

In the agent's kernel the server is the namespace ``notes``: ``notes.search(query=...)``
returns structured results (a list of dicts), and ``notes.delete`` is annotated
destructive, so each call waits for your yes (``--approve all|none`` decides instead).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from typing_extensions import TypedDict  # pydantic needs it for structured output before 3.12

STORE = Path(os.environ.get("NOTES_FILE", Path.home() / ".codeact-example-notes.json"))
server = MCPServer("notes", instructions="Short notes, kept in a JSON file on the host.")


class Note(TypedDict):
    title: str
    text: str


def _load() -> dict[str, str]:
    if not STORE.exists():
        return {"groceries": "milk, eggs, coffee", "ideas": "a kernel that asks before it deletes"}
    return dict(json.loads(STORE.read_text()))


def _save(notes: dict[str, str]) -> None:
    STORE.write_text(json.dumps(notes, indent=2))


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def search(query: str = "") -> list[Note]:
    """Notes whose title or text contains the query (all notes for an empty query).

    Args:
        query: Words to look for, case-insensitive.
    """
    q = query.lower()
    return [{"title": t, "text": x} for t, x in _load().items() if q in (t + " " + x).lower()]


@server.tool()
def add(title: str, text: str) -> Note:
    """Add a note, or replace the note with that title.

    Args:
        title: A short name for the note.
        text: What it says.
    """
    notes = _load()
    notes[title] = text
    _save(notes)
    return {"title": title, "text": text}


@server.tool(annotations=ToolAnnotations(destructiveHint=True))
def delete(title: str) -> str:
    """Delete a note for good.

    Args:
        title: The note's title.
    """
    notes = _load()
    if title not in notes:
        raise ToolError(f"no note titled {title!r}; titles: {', '.join(sorted(notes))}")
    del notes[title]
    _save(notes)
    return f"deleted {title}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:
        server.run("streamable-http", port=int(sys.argv[2]))
    else:
        server.run()
