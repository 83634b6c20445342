"""MCP servers as host tools: each server is a namespace of stubs in the kernel.

The host runs the official ``mcp`` SDK's client: a stdio server is a subprocess of the
host, an HTTP server is reached from the host, so no server, token or secret enters the
sandbox. Each server gets one thread with its own event loop (the SDK is async; tool
calls arrive on the tool server's worker threads). Every wait is bounded: startup by
``MCPClient.startup_timeout``, each call by ``MCPClient.call_timeout`` (or the entry's
``timeout``), and a server that dies or hangs gets an error naming it.

Config entries (``Agent.mcp_servers``, ``codeact run --mcp JSON``)::

    {"name": "files", "command": ["python", "server.py"], "env": {"ROOT": "/data"}}
    {"name": "gh", "url": "http://127.0.0.1:8000/mcp",
     "headers_env": {"Authorization": "Bearer $GH_TOKEN"}}

plus optional ``cwd``, ``timeout``, ``startup_timeout``, ``on_failure`` ("continue" or
"stop"), ``requires_approval`` (true, false or a list of tool names; default: from the
tools' annotations) and ``description``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import importlib
import os
import string
import tempfile
import threading
import time
import urllib.parse
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from traitlets import Enum, Float
from traitlets.config import Configurable

from ..errors import MCPServerError, MCPToolError, ToolError
from .mcp_schema import SchemaSignature, docstring, identifier, read_schemas
from .stubs import rpc_call, stub_source
from .tool import Tool, parse_docstring

if TYPE_CHECKING:
    import mcp

ENTRY_KEYS = ("name", "command", "env", "cwd", "url", "headers_env", "timeout",
              "startup_timeout", "on_failure", "requires_approval", "description")
NAMESPACE_PREFIX = "_codeact_ns_"
MAX_TOOLS = 1000
STDERR_TAIL = 2000


class MCPClient(Configurable):
    """How the host talks to MCP servers (timeouts, and what a failure does to the run)."""

    startup_timeout = Float(
        30.0, help="Seconds an MCP server may take to start and list its tools."
    ).tag(config=True)
    call_timeout = Float(
        60.0, help="Seconds one MCP tool call may take before it is cancelled with an error "
        "naming the server (an entry's 'timeout' overrides it)."
    ).tag(config=True)
    on_failure = Enum(
        ["continue", "stop"], "continue",
        help="When an MCP server fails to start or dies: 'continue' runs on without its "
        "tools (their calls raise ToolCallError naming the server), 'stop' ends the run "
        "with the server's error. An entry's 'on_failure' overrides it.",
    ).tag(config=True)


@dataclass
class MCPServerSpec:
    """One validated ``mcp_servers`` entry."""

    name: str
    command: list[str] = field(default_factory=list)
    url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    headers_env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout: float | None = None
    startup_timeout: float | None = None
    on_failure: str | None = None
    requires_approval: bool | list[str] | None = None
    description: str = ""

    @classmethod
    def from_entry(cls, entry: Any) -> MCPServerSpec:
        """Check an entry; a bad one gets a ToolError that shows the expected shape."""
        shape = ('{"name": "files", "command": ["python", "server.py"]} or '
                 '{"name": "gh", "url": "http://127.0.0.1:8000/mcp"}')
        if not isinstance(entry, dict):
            raise ToolError(f"an MCP server entry must be a dict like {shape}, got {entry!r}")
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:
            raise ToolError(f"MCP server entry {entry.get('name')!r}: unknown key(s) "
                            f"{', '.join(unknown)}; allowed: {', '.join(ENTRY_KEYS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ToolError(f"an MCP server entry needs a 'name': {shape}")
        command, url = entry.get("command"), entry.get("url")
        if isinstance(command, str):
            command = [command]
        if bool(command) == bool(url):
            raise ToolError(f"MCP server {name!r} needs exactly one of 'command' (stdio) and "
                            f"'url' (streamable HTTP): {shape}")
        if command and not all(isinstance(c, str) for c in command):
            raise ToolError(f"MCP server {name!r}: 'command' must be a list of strings")
        if url and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise ToolError(f"MCP server {name!r}: 'url' must start with http:// or https://")
        for key in ("env", "headers_env"):
            value = entry.get(key, {})
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise ToolError(f"MCP server {name!r}: {key!r} must map strings to strings")
        on_failure = entry.get("on_failure")
        if on_failure not in (None, "continue", "stop"):
            raise ToolError(f"MCP server {name!r}: 'on_failure' is 'continue' or 'stop'")
        approval = entry.get("requires_approval")
        if approval is not None and not isinstance(approval, (bool, list)):
            raise ToolError(f"MCP server {name!r}: 'requires_approval' is true, false or a "
                            "list of tool names")
        return cls(
            name=name, command=list(command or []), url=url or "", env=dict(entry.get("env", {})),
            headers_env=dict(entry.get("headers_env", {})), cwd=entry.get("cwd"),
            timeout=_seconds(entry, "timeout"), startup_timeout=_seconds(entry, "startup_timeout"),
            on_failure=on_failure, requires_approval=approval,
            description=str(entry.get("description", "")),
        )

    @property
    def where(self) -> str:
        """The server for messages that reach the kernel: a URL without credentials or
        query, or the command's program name, never its arguments."""
        if self.url:
            parts = urllib.parse.urlsplit(self.url)
            return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}" \
                f"{parts.path}"
        return f"stdio: {os.path.basename(self.command[0])}"

    def headers(self) -> dict[str, str]:
        """HTTP headers, read from the host's environment now (never from config text)."""
        out: dict[str, str] = {}
        for header, source in self.headers_env.items():
            try:
                if "$" in source:  # a template: "Bearer $TOKEN"
                    out[header] = string.Template(source).substitute(os.environ)
                else:
                    out[header] = os.environ[source]
            except (KeyError, ValueError) as exc:
                raise MCPServerError(
                    f"MCP server {self.name!r}: header {header!r} needs the environment "
                    f"variable {str(exc).strip(chr(39))}, which is not set on the host"
                ) from None
        return out


def _seconds(entry: dict[str, Any], key: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ToolError(f"MCP server {entry.get('name')!r}: {key!r} must be a number of "
                        "seconds above 0")
    return float(value)


class MCPConnection:
    """One server: a thread running its event loop and the SDK's client session."""

    def __init__(self, spec: MCPServerSpec, *, startup_timeout: float,
                 call_timeout: float) -> None:
        self.spec = spec
        self.startup_timeout = spec.startup_timeout or startup_timeout
        self.call_timeout = spec.timeout or call_timeout
        self.failure: str | None = None
        self.tools: list[mcp.types.Tool] = []
        self.instructions = ""
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        # The server's stderr, for the error message when it dies; an anonymous file.
        self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def doc(self) -> str:
        """What the namespace's help() says: the entry's description or the server's."""
        about = self.spec.description or self.instructions
        head = f"Tools of the MCP server {self.name!r}."
        return f"{head}\n\n{about.strip()}" if about.strip() else head

    def start(self) -> MCPConnection:
        """Connect and list the tools; MCPServerError (naming the server) if that fails."""
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"codeact-mcp-{self.name}")
        self._thread.start()
        if not self._ready.wait(self.startup_timeout):
            self.failure = f"it did not start within {self.startup_timeout:g}s"
        if self.failure is not None:
            message = self._describe(f"MCP server {self.name!r} ({self.spec.where}) failed "
                                     f"to start: {self.failure}")
            self.close()
            raise MCPServerError(message)
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # the thread must end quietly, with the reason kept
            self.failure = self.failure or _reason(exc)
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        self._stop = asyncio.Event()
        try:
            async with AsyncExitStack() as stack:
                client = await self._connect(stack)
                self.tools = await _list_tools(client)
                # The SDK checks structured results with jsonschema, imported on first use:
                # seconds on a busy machine, better spent here than in a tool call's time.
                await asyncio.to_thread(importlib.import_module, "jsonschema")
                self.instructions = str(getattr(client, "instructions", None) or "")
                self._client = client
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            if not (self._stop.is_set() and isinstance(exc, asyncio.CancelledError)):
                self.failure = self.failure or _reason(exc)
            raise

    async def _connect(self, stack: AsyncExitStack) -> Any:
        try:
            import mcp  # noqa: F401
        except ImportError:
            raise MCPServerError("MCP servers need the mcp SDK on the host: "
                                 "pip install 'codeact-kernel[mcp]'") from None
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        if self.spec.url:
            http = await stack.enter_async_context(
                create_mcp_http_client(headers=self.spec.headers()))
            transport = streamable_http_client(self.spec.url, http_client=http)
        else:
            params = StdioServerParameters(command=self.spec.command[0],
                                           args=self.spec.command[1:], env=self.spec.env,
                                           cwd=self.spec.cwd)
            transport = stdio_client(params, errlog=self._errlog)
        # The SDK bounds every request, initialize included, by one read timeout; calls are
        # bounded by call_timeout in call(), so a short call timeout must not fail start-up.
        read_timeout = max(self.call_timeout, self.startup_timeout)
        return await stack.enter_async_context(
            Client(transport, read_timeout_seconds=read_timeout, cache=None))

    def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call ``tool`` from any thread; the SDK's CallToolResult, or MCPServerError."""
        if self.failure is not None or self._loop is None or self._client is None:
            raise MCPServerError(
                f"MCP server {self.name!r} is not available: {self.failure or 'not started'}")
        try:
            future = asyncio.run_coroutine_threadsafe(
                self._client.call_tool(tool, arguments), self._loop)
        except RuntimeError:  # the loop has ended
            self.failure = self.failure or "its connection ended"
            raise MCPServerError(f"MCP server {self.name!r} is not available: "
                                 f"{self.failure}") from None
        try:
            return future.result(self.call_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise MCPServerError(
                f"MCP server {self.name!r} did not answer {tool} within "
                f"{self.call_timeout:g}s; the call was cancelled (raise the entry's "
                "'timeout' or MCPClient.call_timeout if the tool is just slow)") from None
        except Exception as exc:
            return self._failed_call(tool, exc)

    def _failed_call(self, tool: str, exc: Exception) -> Any:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED

        if isinstance(exc, MCPError) and exc.code != CONNECTION_CLOSED:
            raise MCPToolError(f"MCP server {self.name!r} refused {tool}: {exc.message}") from None
        # The connection is gone: the process exited or crashed, or the URL stopped answering.
        self.failure = (f"its connection closed during {tool} (the server exited or crashed)"
                        if isinstance(exc, MCPError) else _reason(exc))
        # Its stderr stays on the host (the run's metadata): it may hold what the sandbox
        # must not see.
        raise MCPServerError(
            f"MCP server {self.name!r} ({self.spec.where}) died: {self.failure}") from None

    def _describe(self, message: str) -> str:
        tail = self.stderr_tail()
        return f"{message}\n--- its stderr (last lines) ---\n{tail}" if tail else message

    def stderr_tail(self) -> str:
        try:
            self._errlog.flush()
            size = self._errlog.seek(0, os.SEEK_END)
            self._errlog.seek(max(0, size - STDERR_TAIL))
            return self._errlog.read().strip()
        except (OSError, ValueError):
            return ""

    def close(self, wait: float = 8.0) -> None:
        """Stop the session (the SDK ends a stdio server: stdin closed, then signals)."""
        self.request_stop()
        self.join(time.monotonic() + wait)

    def request_stop(self) -> None:
        """Ask the session to end, without waiting (servers are stopped side by side)."""
        loop, stop, main = self._loop, self._stop, self._main
        if loop is not None and stop is not None and main is not None:
            def halt() -> None:
                stop.set()
                if not self._ready.is_set() or self._client is None:
                    main.cancel()  # still connecting: stop that
            try:
                loop.call_soon_threadsafe(halt)
            except RuntimeError:
                pass

    def join(self, deadline: float) -> None:
        """Wait until ``deadline`` (time.monotonic()) for the session's thread to end."""
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self.failure = self.failure or "closed"
        try:
            self._errlog.close()
        except OSError:
            pass


async def _list_tools(client: Any) -> list[mcp.types.Tool]:
    tools: list[mcp.types.Tool] = []
    cursor = None
    for _ in range(100):  # a paginator that never ends must not hang the start
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor or len(tools) >= MAX_TOOLS:
            break
    return tools[:MAX_TOOLS]


def _reason(exc: BaseException) -> str:
    # anyio wraps failures of its task groups; the first leaf says what happened.
    while getattr(exc, "exceptions", None):
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text


class MCPTool(Tool):
    """One tool of an MCP server, called as ``server.tool(...)`` in the kernel."""

    def __init__(self, connection: MCPConnection, info: mcp.types.Tool, attr: str) -> None:
        # Not Tool.__init__: there is no Python function, the schemas say it all.
        self.connection = connection
        self.remote_name = info.name
        self.namespace = connection.name
        self.namespace_doc = connection.doc
        self.attr = attr
        self.name = f"{self.namespace}.{attr}"
        self.stub_name = f"{NAMESPACE_PREFIX}{self.namespace}__{attr}"
        self.schema: SchemaSignature = read_schemas(info.input_schema, info.output_schema,
                                                    info.name)
        self.signature = self.schema.signature()
        description = info.description or (info.annotations.title if info.annotations else "")
        self.doc = docstring(description or "", self.schema.params, self.schema.returns,
                             self.schema.return_fields)
        self.description, self.param_docs = parse_docstring(self.doc)
        self.requires_approval = _needs_approval(connection.spec, info)
        self._is_async = False
        self.fn = self.invoke  # type: ignore[assignment]  # no function: the server runs it

    def render_stub(self) -> str:
        header = self.header(quote=True).replace(self.name, self.stub_name, 1)
        return stub_source(header, self.doc,
                           rpc_call(self.name, [], list(self.signature.parameters)))

    def invoke(self, arguments: dict[str, Any]) -> Any:
        wire: dict[str, Any] = {}
        for param in self.schema.params:
            value = arguments.get(param.name)
            if value is None and not param.required and param.default is None:
                continue  # left out: the server applies its own default
            wire[param.wire] = _jsonable(value)
        result = self.connection.call(self.remote_name, wire)
        return result_value(result, self.schema.unwrap, self.name)


def _jsonable(value: Any) -> Any:
    # check_value turns lists into tuples or sets where annotated so; JSON wants lists.
    if isinstance(value, (tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _needs_approval(spec: MCPServerSpec, info: mcp.types.Tool) -> bool:
    setting = spec.requires_approval
    if isinstance(setting, bool):
        return setting
    if isinstance(setting, list):
        return info.name in setting
    hints = info.annotations
    if hints is None or hints.read_only_hint:
        return False
    return bool(hints.destructive_hint)


def result_value(result: Any, unwrap: str | None, tool: str) -> Any:
    """A CallToolResult as Python: structured content, else text, bytes or a list."""
    if result.is_error:
        text = "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")
        raise MCPToolError(text or f"{tool} failed (the server gave no message)")
    structured = result.structured_content
    if structured is not None:
        if unwrap and isinstance(structured, dict) and set(structured) == {unwrap}:
            return structured[unwrap]
        return structured
    items = [_content_value(c) for c in result.content]
    return items[0] if len(items) == 1 else (items or None)


def _content_value(block: Any) -> Any:
    kind = getattr(block, "type", "")
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        return base64.b64decode(block.data)
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return text if text is not None else base64.b64decode(getattr(resource, "blob", ""))
    if kind == "resource_link":
        return {"uri": str(block.uri), "name": block.name}
    return block.model_dump(mode="json", by_alias=True, exclude_none=True)


def make_tools(connection: MCPConnection) -> tuple[list[MCPTool], list[str]]:
    """The server's tools under identifier names, and a note for each name changed."""
    tools: list[MCPTool] = []
    notes: list[str] = []
    taken: set[str] = set()
    for info in connection.tools:
        attr = identifier(info.name, taken)
        taken.add(attr)
        if attr != info.name:
            clash = identifier(info.name) != attr
            notes.append(f"MCP server {connection.name!r}: tool {info.name!r} is "
                         f"{connection.name}.{attr} in the kernel"
                         + (" (its name collided with another tool's)" if clash else ""))
        tools.append(MCPTool(connection, info, attr))
    return tools, notes

