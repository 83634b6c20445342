"""MCP servers as host tools: real servers (stdio and streamable HTTP), real kernels.

The servers are built with the SDK's MCPServer (tests/tools/mcp_*_server.py); the model is
the only scripted part.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from codeact_kernel.agent.replay import Replayer
from codeact_kernel.errors import MCPServerError, ToolError
from codeact_kernel.tools.mcp import MCPConnection, MCPServerSpec, make_tools
from codeact_kernel.tools.mcp_schema import identifier, read_schemas

from ..helpers import code_cells, fence, load_trace, make_agent
from ..scripted_llm import ScriptedLLMServer
from .mcp_servers import http_server, stdio_entry


def calls_of(nb: Any) -> list[dict[str, Any]]:
    return [c for cell in code_cells(nb) for c in cell.metadata["codeact"]["tool_calls"]]


def test_agent_calls_stdio_and_http_servers_and_replay_needs_neither(
    llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEATHER_TOKEN", "s3cret-token")
    llm.enqueue(
        fence(
            "c = files.city(name='Paris')\n"
            "fc = weather.forecast('Paris', days=3)\n"
            "st = files.stats(values=[1, 2, 3])\n"
            "print(type(c).__name__, c['population'], type(fc).__name__, fc, st)\n"
            "help(files.city)\n"
            "try:\n"
            "    files.read_note(name='nope')\n"
            "except ToolCallError as exc:\n"
            "    print('CAUGHT', exc)\n"
            "print(files)\n"
            "help(weather.forecast)\n"
        ),
        fence("final_answer({'city': c, 'forecast': fc, 'notes': files.list_notes(), "
              "'mean': st['mean']})"),
    )
    with http_server(token="s3cret-token") as url:
        servers = [stdio_entry(), {"name": "weather", "url": url, "startup_timeout": 90,
                                   "headers_env": {"Authorization": "Bearer $WEATHER_TOKEN"}}]
        agent = make_agent(llm, tmp_path, runtime_dir, tools=[], mcp_servers=servers)
        result = agent.run("Facts about Paris")
    assert result.status == "answered", result.reason
    assert result.answer == {
        "city": {"name": "Paris", "population": 2_100_000, "districts": ["Louvre", "Marais"]},
        "forecast": [20, 21, 22], "notes": ["ideas", "todo"], "mean": 2.0,
    }
    out = result.steps[0].outputs[0]["text"]
    assert "dict 2100000 list [20, 21, 22] {'count': 3, 'mean': 2.0}" in out
    assert "city(name: 'str', min_population: 'int' = 0) -> 'dict[str, Any]'" in out
    assert "CAUGHT MCPToolError: Error executing tool read_note: no note named 'nope'" in out
    assert "raised by host tool files.read_note" in out
    assert "<tools of files: read_note, list_notes, delete_note, city" in out
    assert "Daily high temperatures for a city" in out and "days: How many days" in out
    # The prompt gave each tool its signature, return type and docs, per server.
    system = llm.requests[0]["messages"][0]["content"]
    assert "# MCP server files: its tools are attributes of `files`" in system
    assert "def files.city(name: str, min_population: int = 0) -> dict[str, Any]:" in system
    assert "dict[str, Any] with keys: name (str), population (int), districts (list[str])" \
        in system
    assert "def weather.forecast(city: str, days: int = 2) -> list[int]:" in system
    assert "def files.list_notes() -> list[str]:" in system  # 'list-notes', sanitized
    # No token, URL credential or server code entered the kernel.
    nb = load_trace(result.trace_path)
    assert "s3cret-token" not in Path(result.trace_path).read_text()
    names = [c["name"] for c in calls_of(nb)]
    assert names[:3] == ["files.city", "weather.forecast", "files.stats"]
    assert "files.read_note" in names and "files.list_notes" in names
    meta = nb.metadata["codeact"]
    assert {s["name"]: s["tools"] for s in meta["mcp"]["servers"]} == {"files": 8, "weather": 2}
    assert "'list-notes' is files.list_notes" in " ".join(meta["mcp"]["notes"])

    # Replay serves the recorded results: both servers are gone now.
    report = Replayer(session=agent.session.__class__(runtime_dir=str(runtime_dir))).replay(
        result.trace_path)
    assert report.all_same, [c.diff for c in report.cells]
    assert [c.verdict for c in report.cells] == ["same", "same"]


def test_crash_hang_and_start_failure_are_named_and_the_run_goes_on(
    llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path,
) -> None:
    llm.enqueue(
        fence("p = files.pid()\nprint('pid', p)"),
        fence(
            "for call in (lambda: files.city(name='x'), lambda: slow.sleep_forever()):\n"
            "    try:\n"
            "        call()\n"
            "    except ToolCallError as exc:\n"
            "        print('ERR', exc)\n"
            "print(slow.city(name='Lyon')['name'])"
        ),
        fence("final_answer('done')"),
    )
    servers = [stdio_entry(), stdio_entry("slow", timeout=3),
               {"name": "broken", "command": ["/nonexistent/mcp-server"]}]
    agent = make_agent(llm, tmp_path, runtime_dir, tools=[], mcp_servers=servers)

    def kill_files_server(event: Any) -> None:
        if event.kind == "step_end" and event.step == 1:
            pid = event.data.tool_calls[0]["value"]
            os.kill(pid, signal.SIGKILL)

    started = time.monotonic()
    result = agent.run("Use the servers", on_event=kill_files_server)
    assert result.status == "answered", result.reason
    assert time.monotonic() - started < 150
    out = result.steps[1].outputs[0]["text"]
    assert "ERR MCPServerError: MCP server 'files' (stdio: python" in out
    assert "died: its connection closed during city (the server exited or crashed)" in out
    assert "ERR MCPServerError: MCP server 'slow' did not answer sleep_forever within 3s" in out
    assert "Lyon" in out  # the server that hung a call still serves the next one
    # The server that failed to start is named in the prompt, and left out of the kernel.
    system = llm.requests[0]["messages"][0]["content"]
    assert "# MCP server broken is unavailable in this run: MCP server 'broken' " \
        "(stdio: mcp-server) failed to start" in system
    meta = load_trace(result.trace_path).metadata["codeact"]["mcp"]
    assert {s["name"] for s in meta["servers"] if "failure" in s} == {"broken"}


def test_on_failure_stop_ends_the_run_naming_the_server(
    llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path,
) -> None:
    llm.enqueue(fence("try:\n    files.crash()\nexcept ToolCallError as exc:\n"
                      "    print('ERR', exc)"),
                fence("final_answer(1)"))
    agent = make_agent(llm, tmp_path, runtime_dir, tools=[],
                       mcp_servers=[stdio_entry(on_failure="stop")])
    result = agent.run("crash it")
    assert result.status == "error"
    assert "MCP server 'files' failed" in result.reason and "on_failure 'stop'" in result.reason
    nb = load_trace(result.trace_path)
    assert nb.metadata["codeact"]["status"] == "error"
    [cell] = code_cells(nb)  # the step that met the failure is kept, with its output
    assert "ERR MCPServerError: MCP server 'files'" in cell.outputs[0]["text"]
    # A server that cannot start stops the start when it must.
    bad = make_agent(llm, tmp_path / "b", runtime_dir, tools=[], mcp_servers=[
        {"name": "gone", "command": ["/nonexistent/server"], "on_failure": "stop"}])
    with pytest.raises(MCPServerError, match=r"MCP server 'gone' .* failed to start"):
        bad.start()


def test_entries_names_and_schemas_are_checked() -> None:
    with pytest.raises(ToolError, match="exactly one of 'command'"):
        MCPServerSpec.from_entry({"name": "x"})
    with pytest.raises(ToolError, match=r"unknown key.*comand.*allowed: name, command"):
        MCPServerSpec.from_entry({"name": "x", "comand": ["y"]})
    spec = MCPServerSpec.from_entry({"name": "x", "url": "https://u:pw@h.example:8443/mcp?k=1",
                                     "headers_env": {"X-Key": "NO_SUCH_VAR_123"}})
    assert spec.where == "https://h.example:8443/mcp"  # no credentials, no query
    with pytest.raises(MCPServerError, match="needs the environment variable NO_SUCH_VAR_123"):
        spec.headers()
    assert [identifier(n) for n in ("get-time", "2fa", "class", "a.b")] == [
        "get_time", "_2fa", "class_", "a_b"]
    assert identifier("get-x", {"get_x"}) == "get_x_2"
    sig = read_schemas({"type": "object", "required": ["q"], "properties": {
        "q": {"type": "string"}, "from": {"enum": ["a", "b"]},
        "n": {"type": ["integer", "null"], "default": 5},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
    }, "$defs": {"Tag": {"type": "string"}}}, None, "t")
    assert str(sig.signature()) == ("(q: str, from_: Optional[Literal['a', 'b']] = None, "
                                    "n: int | None = 5, tags: list[str] | None = None) -> Any")
    assert sig.renamed == {"from_": "from"}


def test_index_listing_search_tools_and_help(llm: ScriptedLLMServer, tmp_path: Path,
                                             runtime_dir: Path) -> None:
    llm.enqueue(fence(
        "print(search_tools('delete a note'))\n"
        "print('---')\n"
        "print(search_tools('population', limit=2))\n"
        "help(files)\n"
        "try:\n"
        "    files.read_notes\n"
        "except AttributeError as exc:\n"
        "    print('NOPE', exc)\n"
        "final_answer(files.read_note(name='todo'))"
    ))
    agent = make_agent(llm, tmp_path, runtime_dir, mcp_servers=[stdio_entry()],
                       tool_listing="index")
    result = agent.run("Read the todo note")
    assert result.answer == "buy milk", result.reason
    system = llm.requests[0]["messages"][0]["content"]
    # Names and one-line summaries only; the docs stay in the kernel.
    assert "10 tools; each line gives a tool's name and what it does" in system
    assert "- files.delete_note: Delete a note for good" in system
    assert "- get_population: " in system  # native tools are listed too
    assert "def files.city" not in system and "Args:" not in system
    out = result.steps[0].outputs[0]["text"]
    first, second = out.split("---")
    assert first.splitlines()[0] == "files.delete_note(name: str) -> str"
    assert "Delete a note for good." in first
    assert "get_population(city: str) -> int" in second.splitlines()[1]
    assert "FUNCTIONS" in out and "read_note(name: 'str') -> 'str'" in out  # help(files)
    assert "NOPE files has no tool 'read_notes'; its tools are: read_note, list_notes" in out
    # The same listing in full below the threshold, as an index above it ('auto').
    assert agent.hub.prompt_docs(agent.all_tools)[0].startswith("10 tools")
    agent.tool_listing, agent.tool_index_threshold = "auto", 10
    assert agent.hub.prompt_docs(agent.all_tools)[0].startswith("def search_cities")


def test_the_readme_example_server_runs(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "examples" / "mcp_notes_server.py"
    spec = MCPServerSpec.from_entry({
        "name": "notes", "command": [sys.executable, str(example)],
        "env": {"NOTES_FILE": str(tmp_path / "notes.json")}, "startup_timeout": 90})
    connection = MCPConnection(spec, startup_timeout=90, call_timeout=30).start()
    try:
        tools = {t.attr: t for t in make_tools(connection)[0]}
        assert [tools[n].requires_approval for n in ("search", "add", "delete")] == [
            False, False, True]
        assert tools["search"].invoke({"query": "milk"}) == [
            {"title": "groceries", "text": "milk, eggs, coffee"}]
        assert tools["delete"].invoke({"title": "groceries"}) == "deleted groceries"
        assert [n["title"] for n in tools["search"].invoke({"query": ""})] == ["ideas"]
    finally:
        connection.close()
