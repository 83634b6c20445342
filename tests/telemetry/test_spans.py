"""Runs as OpenTelemetry GenAI spans, received by a real OTLP/HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import nbformat
import pytest

from codeact_kernel import Agent, tool
from codeact_kernel.telemetry.export import spans_from_trace
from codeact_kernel.telemetry.otlp import write_json

from ..helpers import fence, make_agent
from ..scripted_llm import ScriptedLLMServer
from .receiver import OTLPReceiver, Span, by_name, children

SECRET = "sk-test-5ecret-never-in-spans"


@pytest.fixture
def rx() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture
def servers() -> Iterator[dict[str, ScriptedLLMServer]]:
    with ExitStack() as stack:
        yield {name: stack.enter_context(ScriptedLLMServer()) for name in ("boss", "helper")}


def _agent(llm: ScriptedLLMServer, runtime: Path, **kw: Any) -> Agent:
    agent = Agent(model="openai/scripted", api_base=llm.api_base, **kw)
    agent.session.runtime_dir = str(runtime)
    agent.llm.max_retries = 0
    return agent


def _root(spans: list[Span]) -> Span:
    roots = [s for s in spans if s.name.startswith("invoke_agent") and not s.parent_id]
    assert len(roots) == 1, [s.name for s in roots]
    return roots[0]


def _run_done(spans: list[Span]) -> bool:
    return any(s.name.startswith("invoke_agent") and not s.parent_id for s in spans)


def _team_run(servers: dict[str, ScriptedLLMServer], tmp_path: Path, runtime: Path,
              endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CODEACT_TEST_KEY", SECRET)

    @tool
    def population(city: str) -> int:
        """Population of a city."""
        return {"Lyon": 522250}[city]

    helper = _agent(servers["helper"], runtime, name="helper", description="Doubles numbers.")
    boss = _agent(servers["boss"], runtime, tools=[population], managed_agents=[helper],
                  name="boss", trace_path=str(tmp_path / "boss.ipynb"),
                  otel_endpoint=endpoint, api_key_env="CODEACT_TEST_KEY")
    servers["boss"].enqueue(
        fence("p = population('Lyon')\nd = helper('Double n', n=p)\nprint(p, d)"),
        fence("final_answer(d)"),
    )
    servers["helper"].enqueue(fence("final_answer(n * 2)"))
    with boss:
        assert boss.tool_server is not None
        token = boss.tool_server.token
        result = boss.run("Lyon's population, doubled")
    result.tool_token = token
    return result


def test_run_with_tools_and_sub_agent_is_one_span_tree(
        servers: dict[str, ScriptedLLMServer], rx: OTLPReceiver, tmp_path: Path,
        runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _team_run(servers, tmp_path, runtime_dir, rx.endpoint, monkeypatch)
    assert result.status == "answered", result.reason
    spans = rx.wait_for(lambda s: _run_done(s) and len(by_name(s, "invoke_agent")) == 2)
    root = _root(spans)
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "boss"
    assert root.attributes["gen_ai.request.model"] == "openai/scripted"
    assert root.attributes["codeact.status"] == "answered"
    assert root.status == 1
    assert {s.trace_id for s in spans} == {root.trace_id}  # one trace, sub-agent included
    steps = children(spans, root)
    assert [s.name for s in steps] == ["step 1", "step 2"]
    chat = next(s for s in children(spans, steps[0]) if s.name.startswith("chat"))
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 100
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert chat.kind == 3  # SPAN_KIND_CLIENT: the model is outside the process
    execute = next(s for s in children(spans, steps[0]) if s.name == "execute_code")
    assert "population('Lyon')" in execute.attributes["codeact.code"]
    assert execute.attributes["codeact.execution.status"] == "ok"
    assert execute.attributes["codeact.execution.output_bytes"] > 0
    tools = {s.attributes["gen_ai.tool.name"]: s for s in children(spans, execute)}
    assert set(tools) == {"population", "helper"}
    assert json.loads(tools["population"].attributes["gen_ai.tool.call.arguments"]) == {
        "city": "Lyon"}
    assert tools["population"].attributes["gen_ai.tool.call.result"] == "522250"
    # The sub-agent's run nests under the parent's tool span, with its own steps.
    sub = children(spans, tools["helper"])
    assert [s.name for s in sub] == ["invoke_agent helper"]
    assert [s.name for s in children(spans, sub[0])] == ["step 1"]
    assert tools["helper"].start <= sub[0].start and sub[0].end <= tools["helper"].end + 10**8
    # Notebook and spans name each other.
    nb = nbformat.read(result.trace_path, as_version=4)
    run_ids = nb.metadata["codeact"]["runs"][0]["otel"]
    assert (run_ids["trace_id"], run_ids["span_id"]) == (root.trace_id, root.span_id)
    step_cell = next(c for c in nb.cells if c.metadata.get("codeact", {}).get("step") == 1
                     and c.cell_type == "code")
    assert step_cell.metadata["codeact"]["otel"]["span_id"] == steps[0].span_id
    # No secret: not the API key, not the tool server's token, anywhere in any span.
    raw = b"".join(s.raw for s in spans)
    assert SECRET.encode() not in raw
    assert len(result.tool_token) >= 32 and result.tool_token.encode() not in raw


def test_error_and_timed_out_steps_carry_error_status(llm: ScriptedLLMServer, rx: OTLPReceiver,
                                                      tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence("1 / 0"), fence("import time\ntime.sleep(60)"), fence("final_answer(3)"))
    agent = make_agent(llm, tmp_path, runtime_dir, otel_endpoint=rx.endpoint, step_timeout=2.0)
    result = agent.run("Three, eventually")
    assert result.status == "answered"
    spans = rx.wait_for(_run_done)
    steps = children(spans, _root(spans))
    assert [s.name for s in steps] == ["step 1", "step 2", "step 3"]
    assert [s.status for s in steps] == [2, 2, 1]
    assert steps[0].message.startswith("error")
    assert steps[1].message.startswith("timeout")
    timed_out = next(s for s in children(spans, steps[1]) if s.name == "execute_code")
    assert timed_out.attributes["codeact.execution.timed_out"] is True
    assert timed_out.status == 2
    assert 1.5e9 < timed_out.end - timed_out.start < 30e9


def test_saved_trace_exports_the_same_tree(
        servers: dict[str, ScriptedLLMServer], rx: OTLPReceiver, tmp_path: Path,
        runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with OTLPReceiver() as live:
        result = _team_run(servers, tmp_path, runtime_dir, live.endpoint, monkeypatch)
        live_spans = live.wait_for(lambda s: len(by_name(s, "invoke_agent")) == 2)
    done = subprocess.run(
        [sys.executable, "-m", "codeact_kernel.terminal.cli", "export", result.trace_path,
         "--otlp", rx.endpoint], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    exported = rx.wait_for(lambda s: len(by_name(s, "invoke_agent")) == 2)

    def tree(spans: list[Span]) -> set[tuple[str, str, str]]:
        names = {s.span_id: s.name for s in spans}
        return {(s.name, names.get(s.parent_id, ""), s.span_id) for s in spans}

    # Same spans, same ids (recorded in the notebooks), same parents.
    assert tree(exported) == tree(live_spans)
    # --otlp-file writes an OTLP/JSON request a collector accepts.
    out = tmp_path / "spans.json"
    write_json(spans_from_trace(result.trace_path), out)
    from google.protobuf.json_format import Parse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = Parse(out.read_text(), ExportTraceServiceRequest())
    names = [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(names) == sorted(s.name for s in exported)


def test_old_trace_without_ids_gets_a_consistent_tree(llm: ScriptedLLMServer, tmp_path: Path,
                                                      runtime_dir: Path) -> None:
    llm.enqueue(fence("x = 2"), "I have no code this time.", fence("final_answer(x)"))
    result = make_agent(llm, tmp_path, runtime_dir, resample_repeats=0).run("two")
    spans = spans_from_trace(result.trace_path)
    root = next(s for s in spans if s.parent_id is None)
    steps = [s for s in spans if s.parent_id == root.span_id]
    assert [s.name for s in steps] == ["step 1", "step 2", "step 3"]  # the no-code step too
    assert {s.trace_id for s in spans} == {root.trace_id}
    assert all(s.start <= s.end for s in spans)
    assert root.start <= min(s.start for s in steps) and root.end >= max(s.end for s in steps)


def test_dead_endpoint_never_blocks_and_is_reported_once(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    with OTLPReceiver() as gone:
        dead = gone.endpoint  # a port nobody listens on once the receiver has closed
    llm.enqueue(fence("print(1)"), fence("print(2)"), fence("final_answer(3)"))
    agent = make_agent(llm, tmp_path, runtime_dir, otel_endpoint=dead)
    agent.telemetry.export_timeout = 1.0
    with caplog.at_level(logging.WARNING, logger="codeact_kernel.telemetry"):
        started = time.monotonic()
        result = agent.run("three")
        elapsed = time.monotonic() - started
    assert result.status == "answered"
    assert elapsed < 15
    failures = [r for r in caplog.records if "export to" in r.getMessage()]
    assert len(failures) == 1
    assert dead in failures[0].getMessage()


def test_redaction_hook_and_attribute_cap(llm: ScriptedLLMServer, rx: OTLPReceiver,
                                          tmp_path: Path, runtime_dir: Path) -> None:
    @tool
    def login(user: str, password: str) -> str:
        """Log in."""
        return "token-" + "x" * 10_000

    def redact(kind: str, value: Any) -> Any:
        if kind == "tool.arguments" and isinstance(value, dict) and "password" in value:
            return {**value, "password": "***"}
        if kind == "code":
            return value.replace("hunter2", "***")
        return value

    llm.enqueue(fence("t = login('ann', 'hunter2')\nfiller = '" + "z" * 900 + "'\n"
                      "final_answer(len(t))"))
    agent = make_agent(llm, tmp_path, runtime_dir, tools=[login], otel_endpoint=rx.endpoint)
    agent.telemetry.redact = redact
    agent.telemetry.max_attribute_chars = 500
    outcome = agent.run("log in")
    assert outcome.status == "answered", outcome.reason
    spans = rx.wait_for(_run_done)
    call = by_name(spans, "execute_tool login")[0]
    assert json.loads(call.attributes["gen_ai.tool.call.arguments"])["password"] == "***"
    assert "hunter2" not in json.dumps([s.attributes for s in spans])
    assert len(call.attributes["gen_ai.tool.call.result"]) <= 500
    code = next(s for s in spans if s.name == "execute_code").attributes["codeact.code"]
    assert "characters cut" in code and len(code) <= 560
    assert code.startswith("t = login('ann', '***')")


def test_export_off_imports_no_opentelemetry(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from codeact_kernel import Agent\n"
        "from codeact_kernel.trace.notebook import TraceWriter\n"
        f"agent = Agent(model='openai/x', trace_path={str(tmp_path / 't.ipynb')!r})\n"
        f"writer = TraceWriter(Path({str(tmp_path / 't.ipynb')!r}), {{}})\n"
        "agent._attach_telemetry(writer)\n"
        "writer.add_task('t')\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_json_function_calls_are_tool_spans_of_their_step(
        llm: ScriptedLLMServer, rx: OTLPReceiver, tmp_path: Path, runtime_dir: Path) -> None:
    from ..scripted_llm import call, tool_calls

    @tool
    def population(city: str) -> int:
        """Population of a city."""
        return {"Lyon": 522250}[city]

    agent = _agent(llm, runtime_dir, tools=[population], action_format="json",
                   trace_path=str(tmp_path / "t.ipynb"), otel_endpoint=rx.endpoint)
    agent.llm.function_calling = "yes"
    llm.enqueue(tool_calls(call("population", {"city": "Lyon"})),
                tool_calls(call("final_answer", {"value": 522250})))
    result = agent.run("Lyon?")
    assert result.answer == 522250
    spans = rx.wait_for(_run_done)
    steps = children(spans, _root(spans))
    assert [s.name for s in steps] == ["step 1", "step 2"]
    tools = [s for s in children(spans, steps[0]) if s.name.startswith("execute_tool")]
    assert [s.attributes["gen_ai.tool.name"] for s in tools] == ["population"]
    assert tools[0].attributes["gen_ai.tool.call.result"] == "522250"
    assert not [s for s in spans if s.name == "execute_code"]
    # The saved trace exports the same tool span.
    exported = spans_from_trace(result.trace_path)
    assert [s.name for s in exported if s.attributes.get("gen_ai.tool.name") == "population"]
