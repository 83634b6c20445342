"""A generated MCP server for bench_mcp.py: N realistic tools plus ``echo``.

    python mcp_bench_server.py N            # stdio
    python mcp_bench_server.py N PORT       # streamable HTTP on 127.0.0.1:PORT/mcp

The tools are made from a few shapes (a lookup, a search with filters, an update with an
enum, a report over a date range) across ten domains, each with a two-sentence
description and documented parameters, as real servers have them.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field

DOMAINS = ["weather", "crm", "billing", "files", "calendar", "tickets", "inventory",
           "repos", "mail", "analytics"]
server = MCPServer("bench", log_level="WARNING")


@server.tool()
def echo(x: int) -> int:
    """Return x unchanged (the timing probe)."""
    return x


def lookup(item_id: Annotated[str, Field(description="The record's id, e.g. 'A-1042'.")],
           fields: Annotated[list[str] | None, Field(description="Fields to return; all "
                                                     "when empty.")] = None) -> dict[str, Any]:
    return {"id": item_id, "fields": fields or []}


def search(query: Annotated[str, Field(description="Words to look for.")],
           limit: Annotated[int, Field(description="Most results to return.")] = 20,
           include_archived: Annotated[bool, Field(description="Also search archived "
                                                   "records.")] = False) -> list[str]:
    return [query][:limit]


def update(item_id: Annotated[str, Field(description="The record to change.")],
           status: Annotated[Literal["open", "pending", "closed"],
                             Field(description="Its new status.")],
           note: Annotated[str, Field(description="Why, for the audit log.")] = "") -> str:
    return f"{item_id} -> {status}"


def report(start: Annotated[str, Field(description="First day, YYYY-MM-DD.")],
           end: Annotated[str, Field(description="Last day, YYYY-MM-DD.")],
           group_by: Annotated[Literal["day", "week", "month"],
                               Field(description="Bucket size.")] = "day") -> dict[str, float]:
    return {start: 0.0, end: 1.0}


SHAPES = [
    (lookup, "get_{d}_record_{i}", "Fetch one {d} record by its id. Returns the record's "
     "fields as a dict; raises if the id is unknown."),
    (search, "search_{d}_{i}", "Search {d} records by words in their text. Returns matching "
     "ids, best first."),
    (update, "set_{d}_status_{i}", "Change the status of a {d} record. The change is logged "
     "with the note."),
    (report, "{d}_report_{i}", "Totals of {d} activity between two dates. Returns one number "
     "per bucket."),
]


def add_tools(count: int) -> None:
    for i in range(count):
        fn, name, description = SHAPES[i % len(SHAPES)]
        domain = DOMAINS[(i // len(SHAPES)) % len(DOMAINS)]
        server.add_tool(fn, name=name.format(d=domain, i=i),
                        description=description.format(d=domain))


if __name__ == "__main__":
    add_tools(int(sys.argv[1]))
    if len(sys.argv) > 2:
        server.run("streamable-http", port=int(sys.argv[2]))
    else:
        server.run()
