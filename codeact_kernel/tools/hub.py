"""Tools from anywhere, for one agent: its MCP servers, its approval gate, its tool listing.

``ToolOptions`` holds the settings (they are ``Agent`` traits: ``Agent.mcp_servers``,
``Agent.approval``, ``Agent.tool_listing`` ...); ``ToolHub`` does the work, so the
agent's loop only calls it at start, around each step and at close.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Sequence
from typing import Any

from traitlets import Bool, Enum, Float, Int, List, Unicode
from traitlets.config import Configurable

from ..errors import MCPServerError, ToolError
from ..traits import JSONObject
from .approval import ApprovalGate, Human
from .listing import LISTINGS, prompt_docs
from .mcp import MCPClient, MCPConnection, MCPServerSpec, MCPTool, make_tools
from .mcp_schema import identifier
from .paging import MAX_PAGES, PAGE_PARAMETERS, follow_all
from .tool import RESERVED_NAMES, Tool

log = logging.getLogger(__name__)


class ToolOptions(Configurable):
    """The agent's settings for MCP servers, approval and tool listing (Agent's traits)."""

    mcp_servers = List(
        JSONObject(),
        help="MCP servers whose tools the code can call, each a dict: {'name': 'files', "
        "'command': ['python', 'server.py'], 'env': {...}} (stdio) or {'name': 'gh', 'url': "
        "'http://...', 'headers_env': {'Authorization': 'Bearer $GH_TOKEN'}} (streamable "
        "HTTP). Optional keys: cwd, timeout, startup_timeout, on_failure, requires_approval, "
        "description. In the kernel each server is a namespace: files.read_text(...).",
    ).tag(config=True)
    approval = Enum(
        ["ask", "allow", "deny"], "ask",
        help="Calls of tools that need approval (@tool(requires_approval=True); MCP tools "
        "annotated destructive): 'ask' a human (inside the running cell), 'allow' or 'deny' "
        "them all. Without a human to ask, approval_headless decides.",
    ).tag(config=True)
    approval_headless = Enum(
        ["deny", "allow"], "deny",
        help="What 'ask' means when no human can answer (CI, --no-input): never waits.",
    ).tag(config=True)
    approval_timeout = Float(
        600.0, help="Seconds a human may take to decide on a call; no answer denies it. "
        "The wait does not count against the step timeout."
    ).tag(config=True)
    confirm_code = Bool(
        False, help="Show each step's code to the human before it runs: run, edit or deny "
        "it (OpenHands' confirmation mode). Without a human, approval decides."
    ).tag(config=True)
    tool_listing = Enum(
        list(LISTINGS), "auto",
        help="How the prompt lists the tools: 'full' (def lines and docstrings), 'signature' "
        "(a signature line with the doc under it, no def: less copied by small models), "
        "'index' (names "
        "and one-line summaries; the kernel's search_tools(query) and help(tool) give the "
        "rest) or 'auto' (index past tool_index_threshold tools).",
    ).tag(config=True)
    tool_index_threshold = Int(
        30, help="With tool_listing 'auto', more tools than this are listed as an index."
    ).tag(config=True)
    follow_pages = Bool(
        False, help="Follow a paged host tool's next-page tokens on the host: a call for "
        "the first page returns the items of every page (up to max_pages) in one result, "
        "and the tool's doc says so. Paged: a parameter named in page_parameters whose "
        "default is '' or None, and a dict result with one list beside a key naming 'next'.",
    ).tag(config=True)
    max_pages = Int(
        20, min=2, max=MAX_PAGES, help="With follow_pages, the most pages one call reads; "
        "the result keeps the token of the pages left.",
    ).tag(config=True)
    page_parameters = List(
        Unicode(), list(PAGE_PARAMETERS),
        help="Parameter names that make a host tool paged (see follow_pages).",
    ).tag(config=True)


class ToolHub:
    """Starts and stops the MCP servers, and owns the approval gate, for ``options``."""

    def __init__(self, options: ToolOptions) -> None:
        self.options = options
        self.client = MCPClient(parent=options)
        self.connections: list[MCPConnection] = []
        self.tools: list[MCPTool] = []
        self.failed: dict[str, str] = {}
        self.notes: list[str] = []
        self.gate = ApprovalGate()

    # ---- MCP servers --------------------------------------------------------------------

    async def astart(self, taken: Sequence[str]) -> list[MCPTool]:
        """Start every configured server (at once); a failure stops the start only for
        servers with on_failure 'stop'."""
        specs = self._specs(taken)
        pending = [MCPConnection(s, startup_timeout=self.client.startup_timeout,
                                 call_timeout=self.client.call_timeout) for s in specs]
        outcomes = await asyncio.gather(*(asyncio.to_thread(c.start) for c in pending),
                                        return_exceptions=True)
        fatal: list[str] = []
        for connection, outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.failed[connection.name] = str(outcome)
                log.warning("%s", outcome)
                if self._on_failure(connection.spec) == "stop":
                    fatal.append(str(outcome))
                continue
            self.connections.append(connection)
            tools, notes = make_tools(connection)
            self.tools += tools
            self.notes += notes
        if fatal:
            self.close()
            raise MCPServerError("\n".join(fatal))
        for note in self.notes:
            log.info("%s", note)
        return self.tools

    def _specs(self, taken: Sequence[str]) -> list[MCPServerSpec]:
        specs: list[MCPServerSpec] = []
        used = set(taken) | RESERVED_NAMES | {"search_tools", "ToolDenied"}
        for entry in self.options.mcp_servers:
            spec = MCPServerSpec.from_entry(entry)
            name = identifier(spec.name)
            if name in used or hasattr(builtins, name) or name.startswith("_"):
                raise ToolError(
                    f"MCP server name {spec.name!r} ({name!r} in the kernel) collides with "
                    "another tool, server or Python builtin; give the entry another 'name'")
            if name != spec.name:
                self.notes.append(f"MCP server {spec.name!r} is {name!r} in the kernel")
                spec.name = name
            used.add(name)
            specs.append(spec)
        return specs

    def _on_failure(self, spec: MCPServerSpec) -> str:
        return spec.on_failure or self.client.on_failure

    def check_servers(self) -> None:
        """After a step: MCPServerError if a server whose failure stops the run has died."""
        for connection in self.connections:
            if connection.failure and self._on_failure(connection.spec) == "stop":
                raise MCPServerError(
                    f"MCP server {connection.name!r} failed ({connection.failure}) and its "
                    "entry says on_failure 'stop'")

    def close(self, wait: float = 8.0) -> None:
        """Stop every server at once; each gets the same few seconds to exit."""
        for connection in self.connections:
            connection.request_stop()
        deadline = time.monotonic() + wait
        for connection in self.connections:
            connection.join(deadline)
        self.connections = []

    def meta(self) -> dict[str, Any]:
        """The servers as the trace records them (their stderr only when they failed)."""
        servers: list[dict[str, Any]] = [
            {"name": c.name, "where": c.spec.where, "tools": len(c.tools),
             **({"failure": c.failure, "stderr": c.stderr_tail()} if c.failure else {})}
            for c in self.connections
        ]
        servers += [{"name": name, "failure": why} for name, why in self.failed.items()]
        return {"servers": servers, "notes": self.notes}

    def host_tools(self, tools: Sequence[Tool]) -> list[Tool]:
        """The agent's own tools as the kernel gets them: paged ones followed to the end."""
        if not self.options.follow_pages:
            return list(tools)
        return follow_all(tools, self.options.max_pages, self.options.page_parameters)

    # ---- each step ----------------------------------------------------------------------

    def prompt_docs(self, tools: Sequence[Tool]) -> list[str]:
        docs = prompt_docs(tools, self.options.tool_listing, self.options.tool_index_threshold)
        for name, why in self.failed.items():  # the first line: stderr stays on the host
            docs.append(f"# MCP server {name} is unavailable in this run: "
                        f"{why.splitlines()[0][:300]}")
        return docs

    def begin_step(self, step: int, code: str, human: bool) -> None:
        gate, options = self.gate, self.options
        gate.mode, gate.headless = options.approval, options.approval_headless
        gate.timeout = options.approval_timeout
        gate.begin_step(step, code, human)

    async def confirm_step(self, step: int, code: str, human: Human | None
                           ) -> tuple[str | None, str]:
        """--confirm-code: the code to run (maybe edited by the human) and "", or None and
        why it was denied (the step then ends: ``gate.end_step()`` has its decisions)."""
        self.begin_step(step, code, human is not None)
        confirmed, decision = await self.gate.confirm_code(step, code, human)
        if confirmed is None:
            why = decision["reason"] or "no reason given"
            return None, f"denied by the {decision['by']}: {why}"
        return confirmed, ""
