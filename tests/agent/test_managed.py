"""Managed agents: sub-agents called as functions from the orchestrator's kernel."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import nbformat
import pytest

from codeact_kernel import Agent
from codeact_kernel.trace.report import show

from ..helpers import code_cells, fence
from ..scripted_llm import ScriptedLLMServer


@pytest.fixture
def servers() -> Iterator[dict[str, ScriptedLLMServer]]:
    with ExitStack() as stack:
        yield {name: stack.enter_context(ScriptedLLMServer())
               for name in ("boss", "researcher", "calculator")}


def child(name: str, description: str, llm: ScriptedLLMServer, runtime: Path,
          **kw: Any) -> Agent:
    agent = Agent(model="openai/scripted", api_base=llm.api_base, name=name,
                  description=description, **kw)
    agent.session.runtime_dir = str(runtime)
    agent.llm.max_retries = 0
    return agent


def boss(llm: ScriptedLLMServer, tmp_path: Path, runtime: Path, children: list[Agent],
         **kw: Any) -> Agent:
    agent = Agent(model="openai/scripted", api_base=llm.api_base, managed_agents=children,
                  trace_path=str(tmp_path / "boss.ipynb"), **kw)
    agent.session.runtime_dir = str(runtime)
    agent.llm.max_retries = 0
    return agent


def team(servers: dict[str, ScriptedLLMServer], runtime: Path) -> list[Agent]:
    return [
        child("researcher", "Finds facts about cities.", servers["researcher"], runtime),
        child("calculator", "Does arithmetic on numbers it is given.", servers["calculator"],
              runtime),
    ]


def test_orchestrator_combines_two_sub_agents(servers: dict[str, ScriptedLLMServer],
                                              tmp_path: Path, runtime_dir: Path) -> None:
    servers["boss"].enqueue(fence(
        "pop = researcher('Population of Lyon?')\n"
        "doubled = calculator('Double the number n', n=pop)\n"
        "final_answer({'pop': pop, 'doubled': doubled})"
    ))
    servers["researcher"].enqueue(fence("final_answer(522250)"))
    servers["calculator"].enqueue(fence("final_answer(n * 2)"))
    result = boss(servers["boss"], tmp_path, runtime_dir, team(servers, runtime_dir)).run(
        "Lyon's population, doubled")
    assert result.status == "answered", result.reason
    assert result.answer == {"pop": 522250, "doubled": 1044500}
    # The orchestrator's prompt documents the sub-agents like tools.
    system = servers["boss"].requests[0]["messages"][0]["content"]
    assert "def researcher(task: str, **context) -> Any" in system
    assert "Finds facts about cities." in system
    # The calculator saw its context variable in its own kernel and prompt.
    assert "n" in servers["calculator"].requests[0]["messages"][1]["content"]
    nb = nbformat.read(result.trace_path, as_version=4)
    calls = code_cells(nb)[0].metadata["codeact"]["tool_calls"]
    linked = [c for c in calls if "trace" in c]
    assert [c["sub_agent"]["name"] for c in linked] == ["researcher", "calculator"]
    for call in linked:
        child_nb = nbformat.read(Path(result.trace_path).parent / call["trace"], as_version=4)
        nbformat.validate(child_nb)
        assert child_nb.metadata["codeact"]["status"] == "answered"
    tree = show(result.trace_path)
    assert tree.count("sub-agent trace") == 2 and "Final answer: 522250" in tree
    assert not list(runtime_dir.iterdir())  # every child kernel was shut down


def test_failing_child_raises_in_orchestrator_code(servers: dict[str, ScriptedLLMServer],
                                                   tmp_path: Path, runtime_dir: Path) -> None:
    servers["boss"].enqueue(fence(
        "try:\n    researcher('Find the mayor')\nexcept ToolCallError as exc:\n"
        "    final_answer('child failed: ' + str(exc))"
    ))
    servers["researcher"].enqueue(fence("x = 1"), fence("x = 2"))
    researcher = child("researcher", "Finds facts.", servers["researcher"], runtime_dir,
                       max_steps=2)
    result = boss(servers["boss"], tmp_path, runtime_dir, [researcher]).run("who is mayor")
    assert result.status == "answered"
    assert "child failed" in result.answer and "max_steps" in result.answer
    assert "step budget exhausted" in result.answer


def test_parent_timeout_stops_slow_child(servers: dict[str, ScriptedLLMServer], tmp_path: Path,
                                         runtime_dir: Path) -> None:
    servers["boss"].enqueue(fence("researcher('Think for a long time')"),
                            fence("final_answer('gave up')"))
    servers["researcher"].enqueue(fence("import time\ntime.sleep(600)"))
    researcher = child("researcher", "Slow thinker.", servers["researcher"], runtime_dir)
    agent = boss(servers["boss"], tmp_path, runtime_dir, [researcher], step_timeout=3)
    result = agent.run("be quick")
    first = result.steps[0]
    assert first.recovery in ("interrupted", "restarted") and "timed out" in first.reason
    assert result.answer == "gave up"
    assert not list(runtime_dir.iterdir())  # the child's kernel is gone
    child_traces = list((tmp_path / "boss.subagents").glob("*.ipynb"))
    assert len(child_traces) == 1
    status = nbformat.read(child_traces[0], as_version=4).metadata["codeact"]["status"]
    assert status in ("interrupted", "timeout")


def test_two_children_run_concurrently(servers: dict[str, ScriptedLLMServer], tmp_path: Path,
                                       runtime_dir: Path) -> None:
    servers["boss"].enqueue(fence(
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(2) as pool:\n"
        "    a = pool.submit(researcher, 'first')\n"
        "    b = pool.submit(calculator, 'second')\n"
        "final_answer([a.result(), b.result()])"
    ))
    servers["researcher"].enqueue(fence("import time\ntime.sleep(2)\nfinal_answer('A')"))
    servers["calculator"].enqueue(fence("import time\ntime.sleep(2)\nfinal_answer('B')"))
    agent = boss(servers["boss"], tmp_path, runtime_dir, team(servers, runtime_dir))
    agent.policy.authorized_imports = ["concurrent.futures"]
    result = agent.run("both at once")
    assert result.answer == ["A", "B"], result.reason
    calls = {c["name"]: c for c in result.steps[0].tool_calls if c["name"] != "final_answer"}
    a, b = calls["researcher"], calls["calculator"]
    # The two calls' time intervals overlap: they ran at the same time.
    assert a["started"] < b["started"] + b["duration"]
    assert b["started"] < a["started"] + a["duration"]


def test_managed_agents_from_config(tmp_path: Path, runtime_dir: Path,
                                    servers: dict[str, ScriptedLLMServer]) -> None:
    from traitlets.config import Config

    config = Config()
    config.Agent.managed_agents_config = [{
        "name": "researcher", "description": "Finds facts.", "model": "openai/scripted",
        "api_base": servers["researcher"].api_base,
        "tools": ["codeact_kernel.terminal.demo:search_cities"],
    }]
    config.KernelSession.runtime_dir = str(runtime_dir)
    servers["boss"].enqueue(fence("final_answer(researcher('cities of Japan'))"))
    servers["researcher"].enqueue(fence("final_answer(search_cities('Japan'))"))
    agent = Agent(model="openai/scripted", api_base=servers["boss"].api_base, config=config,
                  trace_path=str(tmp_path / "b.ipynb"))
    assert agent.run("japan").answer == ["Tokyo", "Osaka", "Nagoya"]


def test_cli_declares_managed_agents(servers: dict[str, ScriptedLLMServer], tmp_path: Path,
                                     runtime_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from codeact_kernel.terminal.cli import main

    servers["boss"].enqueue(fence("final_answer(researcher('cities of Brazil')[0])"))
    servers["researcher"].enqueue(fence("final_answer(search_cities('Brazil'))"))
    spec = {"name": "researcher", "description": "Finds cities.", "model": "openai/scripted",
            "api_base": servers["researcher"].api_base,
            "tools": ["codeact_kernel.terminal.demo:search_cities"]}
    code = main(["run", "first Brazilian city", "--model", "openai/scripted",
                 "--api-base", servers["boss"].api_base, "--managed-agent", json.dumps(spec),
                 "--trace", str(tmp_path / "cli.ipynb"),
                 f"--KernelSession.runtime_dir={runtime_dir}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Final answer: Sao Paulo" in out
    assert main(["run", "x", "--managed-agent", "{not json"]) == 2


def test_json_orchestrator_calls_a_sub_agent_as_a_function(
        servers: dict[str, ScriptedLLMServer], tmp_path: Path, runtime_dir: Path) -> None:
    from ..scripted_llm import call, tool_calls

    servers["boss"].enqueue(
        tool_calls(call("calculator", {"task": "Double the number n", "context": {"n": 21}})),
        tool_calls(call("final_answer", {"value": 42})))
    servers["calculator"].enqueue(fence("final_answer(n * 2)"))
    orchestrator = boss(servers["boss"], tmp_path, runtime_dir, team(servers, runtime_dir),
                        action_format="json")
    orchestrator.llm.function_calling = "yes"
    result = orchestrator.run("Double 21")
    assert result.status == "answered", result.reason
    spec = next(t["function"] for t in servers["boss"].requests[0]["tools"]
                if t["function"]["name"] == "calculator")
    assert spec["parameters"]["required"] == ["task"]
    assert "Does arithmetic" in spec["description"]
    answer = [m for m in servers["boss"].requests[1]["messages"] if m["role"] == "tool"]
    assert answer[0]["content"] == "42"
    # The child ran in its own kernel, with its trace linked from the call.
    call_record = result.steps[0].tool_calls[0]
    assert call_record["name"] == "calculator" and call_record["trace"]
    assert (tmp_path / call_record["trace"]).exists()
