"""The local-model benchmark's runner and baseline loop, on real kernels with a scripted model.

The model is the only scripted part: replies come from a local OpenAI-compatible server
through litellm's real HTTP path; kernels are real sandboxed ipykernels, tools are the
benchmark's own host tools over the real RPC.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from codeact_kernel.models.local import ONE_BLOCK_GRAMMAR, LocalModelServer
from codeact_kernel.models.provider import Endpoint

from ..scripted_llm import ScriptedLLMServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_local_model as bench
import unseen_tasks as ut
from bench_report import summarize
from minimal_loop import NO_CODE, first_code_block


def endpoint(scripted: ScriptedLLMServer) -> Endpoint:
    # As LocalModelServer.endpoint() gives it: the key, request defaults, the stop.
    return Endpoint(model="openai/scripted", api_base=scripted.api_base, api_key="server-key",
                    params=LocalModelServer(reply_grammar=ONE_BLOCK_GRAMMAR).completion_params(),
                    stop_after_first_block=True, tool_call_format="hermes")


@pytest.fixture
def scripted() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


def fence(code: str) -> str:
    return f"I call the tools.\n```python\n{code}\n```"


def run(agent: str, task: str, scripted: ScriptedLLMServer, tmp_path: Path,
        cap: float = 120.0, max_steps: int = 4) -> dict[str, Any]:
    args = bench.parse_args(["--max-steps", str(max_steps)])
    config = bench.agent_config(args, tmp_path)
    config.KernelSession.runtime_dir = str(tmp_path / "runtime")
    (case,) = bench.cases(("tuning", "held_out", "old"), [task])
    return bench.run_one(agent, case, endpoint(scripted), config, tmp_path, cap, 1)


def test_agents_are_named_on_the_command_line() -> None:
    assert bench.parse_args([]).agents == ("code", "json", "auto", "baseline")
    assert bench.parse_args(["--agents", "json, baseline"]).agents == ("json", "baseline")
    with pytest.raises(SystemExit):
        bench.parse_args(["--agents", "product"])


def test_each_agent_runs_every_task_in_turn_unless_asked_task_by_task() -> None:
    todo = bench.cases(("old",), ["demo_cities", "price_change"])
    by_agent = bench.run_order(todo, ("code", "baseline"), 1, "agent")
    assert [(c.name, a) for _, c, a in by_agent] == [
        ("demo_cities", "code"), ("price_change", "code"),
        ("demo_cities", "baseline"), ("price_change", "baseline")]
    by_task = bench.run_order(todo, ("code", "baseline"), 2, "task")
    assert [(r, c.name, a) for r, c, a in by_task][:3] == [
        (1, "demo_cities", "code"), (1, "demo_cities", "baseline"), (1, "price_change", "code")]
    assert len(by_task) == 8 and bench.parse_args([]).order == "agent"


@pytest.mark.parametrize("agent", ["code", "baseline"])
def test_a_reference_solution_passes_for_both_agents(
        agent: str, scripted: ScriptedLLMServer, tmp_path: Path) -> None:
    task = ut.BY_NAME["lisbon_cancelled"]  # paged, and its tool errors advise
    scripted.enqueue(fence(task.solution))
    row = run(agent, task.name, scripted, tmp_path)
    assert row["ok"] and row["status"] == "answered", row
    assert row["steps"] == 1 and row.get("tools_not_called", []) == []
    assert row["set"] == "tuning" and row["difficulty"] == "hard"
    # A reply grammar set on the server is the product's: the plain loop goes without it.
    assert ("grammar" in scripted.requests[0]) == (agent == "code")
    trace = Path(row["trace"])
    if agent == "code":
        assert row["category"] == "pass" and trace.parent.name == "code"
        nbformat.validate(nbformat.read(trace, as_version=4))
    else:
        saved = json.loads(trace.read_text())
        assert saved["steps"][0]["tool_calls"][0]["name"] == "airport_code"


@pytest.mark.parametrize("agent", ["code", "baseline"])
def test_a_right_answer_without_the_tools_fails(
        agent: str, scripted: ScriptedLLMServer, tmp_path: Path) -> None:
    scripted.enqueue(fence("final_answer(['U27622', 'KL1696'])"))
    row = run(agent, "lisbon_cancelled", scripted, tmp_path)
    assert row["status"] == "answered" and not row["ok"]
    if agent == "baseline":
        assert row["correct"] and row["tools_not_called"] == ["airport_code", "departures"]
    else:
        assert row["category"] == "wrong answer"
        assert row["note"] == "right, but never called airport_code, departures successfully"


def test_the_json_format_runs_through_the_bench_engine(
        scripted: ScriptedLLMServer, tmp_path: Path) -> None:
    # The embedded model writes its calls as Hermes text, which the endpoint says.
    task = ut.BY_NAME["screening_count"]
    scripted.enqueue('<tool_call>{"name": "screenings", "arguments": {"date": "2024-06-14"}}'
                     "</tool_call>",
                     '<tool_call>{"name": "final_answer", "arguments": {"value": 0}}'
                     "</tool_call>")
    row = run("json", task.name, scripted, tmp_path)
    assert row["agent"] == "json" and row["status"] == "answered" and row["steps"] == 2
    assert "tools" in scripted.requests[0] and row["category"] == "wrong answer"
    nb = nbformat.read(Path(row["trace"]), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["codeact"]["agent"]["action_format"] == "json"


def test_a_failed_call_does_not_count_as_calling_the_tool(
        scripted: ScriptedLLMServer, tmp_path: Path) -> None:
    # departures('Lisbon') fails with its advice; the answer is then typed in.
    scripted.enqueue(fence("departures('Lisbon')"),
                     fence("final_answer(['U27622', 'KL1696'])"))
    row = run("baseline", "lisbon_cancelled", scripted, tmp_path)
    assert row["steps"] == 2 and row["step_statuses"] == ["error", "ok"]
    assert not row["ok"] and row["tools_not_called"] == ["airport_code", "departures"]
    # The baseline shows the tool's advice as it is, and nothing more.
    second_prompt = scripted.requests[1]["messages"][-1]["content"]
    assert "call airport_code(city) first" in second_prompt
    assert "Reply with" not in second_prompt and "Variables" not in second_prompt


def test_the_baseline_asks_again_for_code_when_a_reply_has_none(
        scripted: ScriptedLLMServer, tmp_path: Path) -> None:
    scripted.enqueue("I will look up the flight.", fence("x = flight_details('TP1352')"),
                     fence("final_answer(2 * x['price_eur'])"))
    row = run("baseline", "madrid_seat_gap", scripted, tmp_path)
    assert row["step_statuses"] == ["no-code", "ok", "ok"]
    assert scripted.requests[1]["messages"][-1]["content"] == NO_CODE
    assert row["status"] == "answered" and not row["ok"]  # 196.0 is not the seat gap
    assert row["answer"] == "196.0"


def test_the_old_tasks_require_every_tool_they_offer(
        scripted: ScriptedLLMServer, tmp_path: Path) -> None:
    scripted.enqueue(fence("final_answer(get_temperature('Cairo') and 'Cairo')"))
    row = run("code", "warmest_city", scripted, tmp_path)
    assert row["ok"] and row["set"] == "old" and row["difficulty"] == ""


@pytest.mark.parametrize("agent", ["code", "baseline"])
def test_a_run_past_the_cap_is_cancelled_and_fails(
        agent: str, scripted: ScriptedLLMServer, tmp_path: Path) -> None:
    scripted.enqueue(fence("import time\nfor _ in range(600):\n    time.sleep(0.1)"))
    row = run(agent, "screening_count", scripted, tmp_path, cap=4.0)
    assert row["status"] == "killed" and not row["ok"]
    assert 4.0 <= row["seconds"] < 4.0 + 30 + 15
    if agent == "code":  # the trace is finished even so, and says the step it was in
        nb = nbformat.read(Path(row["trace"]), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["codeact"]["status"] == "interrupted" and row["steps"] == 1


def test_summaries_count_hard_tasks_and_runs_over_the_target() -> None:
    rows = [
        {"agent": "code", "set": "tuning", "task": "a", "difficulty": "hard", "ok": True,
         "status": "answered", "steps": 1, "seconds": 10.0},
        {"agent": "code", "set": "tuning", "task": "b", "difficulty": "hard", "ok": False,
         "status": "killed", "steps": 6, "seconds": 181.0},
        {"agent": "code", "set": "tuning", "task": "c", "difficulty": "easy", "ok": True,
         "status": "answered", "steps": 3, "seconds": 20.0},
    ]
    (s,) = summarize(rows, ["code", "baseline"], ["tuning", "old"], 120.0).values()
    assert (s["passed"], s["runs"], s["hard_passed"], s["hard_runs"]) == (2, 3, 1, 2)
    assert s["median_steps"] == 3 and s["max_seconds"] == 181.0
    assert s["over_target"] == 1 and s["killed"] == 1 and s["failed"] == ["b"]
    assert s["by_difficulty"] == {"easy": [1, 1], "hard": [1, 2]}


def test_first_code_block() -> None:
    assert first_code_block("a\n```python\nx = 1\n```\nb\n```python\ny = 2\n```") == "x = 1\n"
    assert first_code_block("```\nprint(1)") == "print(1)"
    assert first_code_block("no code here") is None
    assert first_code_block("```python\n\n```") is None
