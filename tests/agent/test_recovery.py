"""Recovery from a small model's mistakes, through the real path: scripted replies through
litellm, real sandboxed kernels, real trace notebooks.

Stub repair, tool results shown on failure (a tool's own error first), cycles broken by a
pruned context, pre-imported modules, and the run's time budget.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from codeact_kernel import Agent, tool
from codeact_kernel.agent.recovery import CycleTracker, degenerate, shape
from codeact_kernel.agent.repair import repair_tool_rebinding
from codeact_kernel.agent.resample import fresh_reply
from codeact_kernel.agent.results import RunResult
from codeact_kernel.models.llm import LLM, Completion
from codeact_kernel.trace.report import show_lines, step_cells

from ..helpers import code_cells, fence, load_trace, make_agent
from ..scripted_llm import ScriptedLLMServer


@tool
def departures(airport: str, page_token: str = "") -> dict[str, Any]:
    """One page of an airport's departures board.

    Args:
        airport: The 3-letter IATA code.
        page_token: '' for the first page, then the previous page's "next_page".
    """
    if airport != "LIS":
        raise ValueError(f"unknown airport {airport!r}: call airport_code(city) first")
    if page_token == "":
        return {"flights": [{"flight": "TP1", "status": "on time"},
                            {"flight": "U2", "status": "cancelled"}], "next_page": "p2"}
    return {"flights": [{"flight": "KL9", "status": "cancelled"}], "next_page": None}


@tool
def airport_code(city: str) -> str:
    """The IATA code of a city's airport."""
    return {"lisbon": "LIS"}[city.lower()]


TOOLS = [departures, airport_code]


def user_texts(request: dict[str, Any]) -> list[str]:
    return [str(m["content"]) for m in request["messages"] if m["role"] == "user"]


# ---- stub repair ---------------------------------------------------------------------------


def test_reply_that_redefines_a_tool_runs_with_the_real_tool(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    stubbed = ('def departures(airport, page_token=""):\n'
               '    """Copied from the prompt."""\n'
               '    return {"flights": [], "next_page": None}\n\n'
               'board = departures("LIS")\n'
               'final_answer([f["flight"] for f in board["flights"]])')
    llm.enqueue(fence(stubbed))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("Flights from Lisbon?")
    assert result.status == "answered", result.reason
    assert result.answer == ["TP1", "U2"]  # the host tool's data, not the stub's
    step = result.steps[0]
    assert step.repaired_from == stubbed
    assert "def departures" not in (step.code or "")
    assert any("dropped your definition of departures()" in c for c in step.repairs)
    nb = load_trace(result.trace_path)
    cell = code_cells(nb)[0]  # ran, so a code cell (not a raw blocked one)
    assert cell.metadata["codeact"]["repaired_from"] == stubbed
    assert cell.metadata["codeact"]["policy"]["allowed"] is True


def test_variable_named_after_a_tool_is_renamed_and_the_tool_still_called(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence('departures = departures("LIS")\n'
                      'again = departures("LIS", "p2")\n'
                      'final_answer(len(departures["flights"]) + len(again["flights"]))'))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("How many flights?")
    assert result.status == "answered", result.reason
    assert result.answer == 3
    assert "departures_result = departures(" in (result.steps[0].code or "")
    assert len([c for c in result.steps[0].tool_calls if c["name"] == "departures"]) == 2


def test_an_import_of_a_tool_is_dropped_and_the_real_tool_runs(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    # The embedded model writes `from molar_mass import molar_mass` for a tool it was given:
    # the policy refuses the import, and the rest of the reply would have run.
    code = ("from departures import departures\nimport airport_code\nimport math\n"
            "board = departures(airport_code('Lisbon'))\n"
            "final_answer(math.floor(len(board['flights'])))")
    llm.enqueue(fence(code))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("How many flights?")
    assert result.status == "answered", result.reason
    assert result.answer == 2
    step = result.steps[0]
    assert step.repaired_from == code
    assert step.code is not None and step.code.startswith("import math\n")
    assert step.repairs == ["dropped your import of departures: the tool is already defined",
                            "dropped your import of airport_code: the tool is already defined"]


def test_an_import_that_binds_anything_besides_tools_is_left_to_the_policy() -> None:
    tools = ["departures"]
    assert repair_tool_rebinding("from flights import departures, boards\nx = 1", tools) is None
    assert repair_tool_rebinding("import departures as d\nx = 1", tools) is None
    assert repair_tool_rebinding("import departures; x = 1", tools) is None  # one line
    fixed = repair_tool_rebinding("from tools import departures as departures\nx = 1", tools)
    assert fixed is not None and fixed.code == "x = 1"


def test_repair_off_blocks_as_before(llm: ScriptedLLMServer, tmp_path: Path,
                                     runtime_dir: Path) -> None:
    llm.enqueue(fence("def airport_code(city):\n    return 'LIS'\nfinal_answer(1)"),
                fence("final_answer(airport_code('Lisbon'))"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, repair_stubs=False).run("x")
    assert [s.status for s in result.steps] == ["blocked", "ok"]
    assert result.steps[0].repaired_from == ""


def test_repair_leaves_code_without_redefinitions_alone() -> None:
    assert repair_tool_rebinding("x = departures('LIS')\nprint(x)", ["departures"]) is None
    assert repair_tool_rebinding("def departures(:\n", ["departures"]) is None  # no parse
    # A reply of redefinitions only has nothing left to run.
    assert repair_tool_rebinding("def departures(a):\n    return 1\n", ["departures"]) is None


# ---- tool results on failure -------------------------------------------------------------


def test_failed_step_shows_the_tools_results_shape_and_their_advice(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(
        fence('try:\n    departures("Lisbon")\nexcept Exception:\n    pass\n'
              'board = departures("LIS")\n'
              'final_answer([f["flight"] for f in board if f["status"] == "cancelled"])'),
        fence('final_answer([f["flight"] for f in board["flights"] '
              'if f["status"] == "cancelled"])'))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("Cancelled flights?")
    assert result.status == "answered", result.reason
    assert result.answer == ["U2"]
    seen = user_texts(llm.requests[1])[-1]
    assert "TypeError" in seen
    assert ("departures(airport='Lisbon', page_token='') failed: ValueError: unknown airport "
            "'Lisbon': call airport_code(city) first") in seen
    assert ("departures(airport='LIS', page_token='') returned dict {'flights': list of 2 "
            "dicts with keys ['flight', 'status']") in seen
    assert "'next_page': str 'p2'" in seen


def test_tool_results_off_leaves_the_traceback_alone(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence('board = departures("LIS")\nboard[0]'), fence("final_answer(1)"))
    make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, show_tool_results=False).run("x")
    seen = user_texts(llm.requests[1])[-1]
    assert "KeyError" in seen and "returned dict" not in seen


def test_shape_describes_nesting_and_empties() -> None:
    assert shape([]) == "empty list"
    assert shape({}) == "empty dict {}"
    assert shape([1, 2]) == "list of 2 int, first 1"
    assert shape({"a": {"b": {"c": 1}}}) == "dict {'a': dict {'b': dict with keys ['c']}}"


# ---- cycles --------------------------------------------------------------------------------


def test_cycle_of_period_two_is_pruned_to_a_summary(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    failing = fence('board = departures("LIS")\nfinal_answer(board[0]["flight"])')
    stub = fence("def departures(airport):\n    return 1\n")  # nothing left after repair
    llm.enqueue(failing, stub, failing, fence('final_answer(board["flights"][0]["flight"])'))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS,
                        resample_repeats=0).run("First flight?")
    assert [s.status for s in result.steps] == ["error", "blocked", "error", "ok"]
    assert result.answer == "TP1"
    assert result.steps[2].cycle_of == 1
    last = llm.requests[3]["messages"]
    # System prompt, task, then one summary: the three failed attempts are gone.
    assert [m["role"] for m in last] == ["system", "user", "user"]
    summary = str(last[2]["content"])
    assert "step 1:" in summary and "step 2:" in summary and "KeyError: 0" in summary
    assert "departures(airport='LIS', page_token='') returned dict" in summary
    nb = load_trace(result.trace_path)
    assert code_cells(nb)[1].metadata["codeact"]["cycle_of"] == 1


def test_cycle_breaking_off_keeps_the_whole_conversation(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    failing = fence("final_answer(undefined_name)")
    llm.enqueue(failing, failing, fence("final_answer(2)"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, break_cycles=False,
                        resample_repeats=0).run("x")
    assert result.answer == 2
    assert len(llm.requests[2]["messages"]) == 6  # system, task, 2 x (reply, observation)


def test_a_reply_repeating_failed_code_is_sampled_again_before_it_runs(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    failing = fence('board = departures("LIS")\nfinal_answer(board[0]["flight"])')
    fixed = fence('final_answer(board["flights"][0]["flight"])')
    # Greedy: the failing code again; the first sample repeats it too; the second is new.
    llm.enqueue(failing, failing, failing, fixed)
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("First flight?")
    assert [s.status for s in result.steps] == ["error", "ok"] and result.answer == "TP1"
    assert result.steps[1].resampled == {"reason": "repeat", "repeated_step": 1, "samples": 2,
                                         "found": True,
                                         "original": 'board = departures("LIS")\n'
                                         'final_answer(board[0]["flight"])'}
    greedy, first, second = llm.requests[1:4]
    assert "seed" not in greedy and greedy["temperature"] == 0
    assert (first["temperature"], first["seed"]) == (0.7, 1)
    assert (second["temperature"], second["seed"]) == (0.7, 2)
    assert first["messages"] == greedy["messages"] == second["messages"]
    # Every sample is paid for: the step's tokens are the three requests' (two of them
    # the failing reply again, which alone cost step 1 its completion tokens).
    assert result.steps[1].completion_tokens > 2 * result.steps[0].completion_tokens
    nb = load_trace(result.trace_path)
    assert code_cells(nb)[1].metadata["codeact"]["resampled"]["samples"] == 2
    assert "resampled" not in code_cells(nb)[0].metadata["codeact"]


def test_when_every_sample_repeats_the_greedy_reply_runs(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    failing = fence("final_answer(undefined_name)")
    llm.enqueue(failing, failing, failing, fence("final_answer(2)"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, resample_repeats=1,
                        resample_temperature=0.3).run("x")
    assert [s.status for s in result.steps] == ["error", "error", "ok"]
    assert result.steps[1].resampled == {"reason": "repeat", "repeated_step": 1, "samples": 1,
                                         "found": False,
                                         "original": "final_answer(undefined_name)"}
    assert result.steps[1].cycle_of == 1 and llm.requests[2]["temperature"] == 0.3


def test_a_reply_without_code_is_sampled_again_within_its_step(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    plan = "I will call departures for LIS and take the first flight."
    llm.enqueue(plan, fence("# Your implementation here\npass"),
                fence('final_answer(departures("LIS")["flights"][0]["flight"])'))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("First flight?")
    assert [s.status for s in result.steps] == ["ok"] and result.answer == "TP1"
    assert result.steps[0].resampled == {"reason": "no code", "repeated_step": None,
                                         "samples": 2, "found": True, "original": plan}


def test_code_without_a_statement_is_sampled_again(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    empty = fence("# Your implementation here\n...")
    llm.enqueue(empty, empty, "still thinking", fence("final_answer(3)"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("x")
    assert result.answer == 3 and len(result.steps) == 1
    assert result.steps[0].resampled is not None
    assert result.steps[0].resampled["reason"] == "no statement"
    assert result.steps[0].resampled["samples"] == 3


def test_a_failed_sample_request_leaves_the_reply_as_it_was(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    # The provider refuses the first sample (a 400 is not retried): the plan goes on as a
    # no-code step.
    llm.enqueue("Only a plan, no code.", 400, fence("final_answer(1)"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("x")
    assert [s.status for s in result.steps] == ["no-code", "ok"] and result.answer == 1
    assert result.steps[0].resampled == {"reason": "no code", "repeated_step": None,
                                         "samples": 0, "found": False,
                                         "original": "Only a plan, no code."}


def test_samples_carry_a_seed_only_where_the_provider_takes_one() -> None:
    # litellm refuses a request with a parameter the provider lacks (Anthropic has no seed).
    assert LLM(model="openai/gpt-4o-mini").takes_param("seed")
    assert not LLM(model="anthropic/claude-3-5-sonnet-20240620").takes_param("seed")
    assert LLM(model="openai/some-self-hosted-model").takes_param("seed")


def test_resampling_off_sends_one_request_a_step(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    failing = fence("final_answer(undefined_name)")
    llm.enqueue(failing, failing, fence("final_answer(2)"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, resample_repeats=0).run("x")
    assert len(llm.requests) == 3 and result.steps[1].resampled is None


def test_tracker_finds_repeats_of_any_period() -> None:
    tracker = CycleTracker()
    assert tracker.add(1, "a = 1\nb", "NameError") is None
    assert tracker.add(2, "c", "blocked") is None
    assert tracker.add(3, "c = 2", "blocked") is None
    earlier = tracker.add(4, "a  =  1\n b", "NameError")
    assert earlier is not None and earlier.step == 1


# ---- pre-imports and the run's budget ------------------------------------------------------


def test_common_modules_are_imported_and_the_prompt_says_so(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence("final_answer([float(np.mean([1, 3])), int(pd.Series([1, 2]).sum()), "
                      "statistics.median([1, 5, 9]), math.floor(2.5), json.dumps(1), "
                      "re.sub('a', 'b', 'a'), collections.Counter('aab')['a']])"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("x")
    assert result.answer == [2.0, 3, 5, 2, "1", "b", 2], result.reason
    system = llm.requests[0]["messages"][0]["content"]
    assert "Already imported" in system and "np (numpy)" in system
    # Modules are not listed among the variables the model is told about.
    assert "Variables already alive" not in system


def test_preimport_off_leaves_the_kernel_bare(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence("final_answer('np' in dir())"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, preimport=False).run("x")
    assert result.answer is False
    assert "Already imported" not in llm.requests[0]["messages"][0]["content"]


def timed_run(agent: Agent, task: str) -> tuple[RunResult, float]:
    """``agent``'s run of ``task`` on a kernel started beforehand, and the run's seconds."""
    agent.start()
    try:
        began = time.monotonic()
        result = agent.run(task)
        return result, time.monotonic() - began
    finally:
        agent.close()


def test_run_stops_at_max_run_seconds(llm: ScriptedLLMServer, tmp_path: Path,
                                      runtime_dir: Path) -> None:
    llm.enqueue(*[fence(f"import time\ntime.sleep(2)\nprint({i})") for i in range(10)])
    result, took = timed_run(make_agent(llm, tmp_path, runtime_dir, tools=TOOLS,
                                        max_run_seconds=3.0, max_steps=10), "sleep a lot")
    assert result.status == "timeout", result.status
    assert "max_run_seconds" in result.reason
    # The last step is the last call for an answer, in the time held back for it.
    assert len(result.steps) <= 3 and result.steps[-1].last_call == "time limit"
    assert took < 8
    assert load_trace(result.trace_path).metadata["codeact"]["status"] == "timeout"


def test_a_reply_the_time_limit_cuts_is_kept_in_the_trace(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.chunk_delay = 0.4  # 16 characters every 0.4 s: the reply needs about 10 s
    llm.enqueue("I will look at every flight, one by one. " * 10)
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, max_run_seconds=3.0,
                        answer_on_budget=False).run("Which flight?")
    assert result.status == "timeout" and result.steps == []
    nb = load_trace(result.trace_path)
    (cut,) = [c for c in nb.cells if c.metadata["codeact"].get("status") == "cut"]
    assert cut.cell_type == "markdown" and cut.metadata["codeact"]["step"] == 1
    assert "I will look at every flight" in cut.source
    assert "cut: the run's time limit ran out after" in cut.source
    assert cut.source.count("one by one") < 10  # what had come by then, not the reply
    assert 0 < cut.metadata["codeact"]["llm_duration"] <= 3.0  # within the run's limit
    # `codeact show` (and a span export of the saved trace) count it as the run's step.
    assert [c.metadata["codeact"]["status"] for c in step_cells(nb)] == ["cut"]
    assert any("step 1: cut" in line for line in show_lines(nb))


def test_the_last_call_after_a_cut_reply_is_the_next_step(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.chunk_delay = 0.4  # the first reply needs 20 s; the last call's, under a second
    llm.enqueue("I will look at every flight, one by one. " * 20, fence("final_answer(1)"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, max_run_seconds=8.0,
                        last_call_seconds=2.0).run("Which flight?")
    assert result.status == "answered" and result.answer == 1, result.reason
    assert [(s.step, s.last_call) for s in result.steps] == [(2, "time limit")]
    cells = step_cells(load_trace(result.trace_path))
    assert [c.metadata["codeact"]["step"] for c in cells] == [1, 2]


def test_time_too_short_for_a_reply_goes_to_the_last_call(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.chunk_delay = 0.4  # 16 characters every 0.4 s: the first reply takes about 3 s
    first = fence("# the first half of the work, and a long rest after it\n"
                  "import time\nfound = 'partial'\ntime.sleep(7)")
    llm.enqueue(first, fence("final_answer(found)"), fence("final_answer(found)"))
    agent = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, max_run_seconds=16.0,
                       last_call_seconds=4.0, resample_repeats=0)
    try:
        agent.start()  # the kernel's start is not the run's time
        result = agent.run("Find it")
    finally:
        agent.close()
    # After step 1 (a 3 s reply, 7 s of sleep) about 2 s are left besides the 4 s held
    # back: a step begun then would be cut before its reply came. The last call gets them.
    assert result.status == "answered" and result.answer == "partial", result.reason
    assert [(s.step, s.last_call) for s in result.steps] == [(1, ""), (2, "time limit")]
    assert len(llm.requests) == 2  # without the rule: step 2 cut, then the last call
    nb = load_trace(result.trace_path)
    assert all(c.metadata["codeact"].get("status") != "cut" for c in nb.cells)


def test_no_sample_starts_without_the_time_for_one(llm: ScriptedLLMServer) -> None:
    cycles = CycleTracker()
    cycles.add(1, "x = 1 / 0", "ZeroDivisionError: division by zero")
    greedy = Completion(text=fence("x = 1 / 0"), duration=5.0)
    model = LLM(model="openai/scripted", api_base=llm.api_base)
    kept, resampled = asyncio.run(fresh_reply(model, [], None, greedy, cycles, 3, 0.7,
                                              time_left=lambda: 4.0))
    assert kept.text == greedy.text and llm.requests == []
    assert resampled is not None and resampled.reason == "repeat"
    assert (resampled.samples, resampled.found, resampled.out_of_time) == (0, False, True)


def test_the_last_call_is_not_sampled_again(llm: ScriptedLLMServer, tmp_path: Path,
                                            runtime_dir: Path) -> None:
    # Its reply repeats the failed step; samples would take the time held back for it.
    llm.enqueue(fence("x = 1 / 0"), fence("x = 1 / 0"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, max_steps=1).run("Divide")
    assert result.status == "max_steps" and len(llm.requests) == 2
    assert result.steps[-1].last_call == "step budget" and result.steps[-1].resampled is None


def test_a_run_out_of_steps_gets_a_last_call_for_its_answer(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence("total = 6 * 7"), fence("print(total)"), fence("final_answer(total)"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, max_steps=2,
                        resample_repeats=0).run("Multiply six by seven")
    assert result.status == "answered" and result.answer == 42
    assert result.reason == "answered on the last call, after the step budget ran out"
    assert [s.last_call for s in result.steps] == ["", "", "step budget"]
    asked = llm.requests[2]["messages"][-1]["content"]
    assert "last reply" in asked and "- total: int = 42" in asked
    cells = code_cells(load_trace(result.trace_path))
    assert cells[-1].metadata["codeact"]["last_call"] == "step budget"
    assert "last_call" not in cells[0].metadata["codeact"]


def test_a_run_out_of_time_gets_its_last_call_in_the_time_held_back(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence("import time\nfound = 'partial'\ntime.sleep(30)"),
                fence("final_answer(found)"))
    result, took = timed_run(make_agent(llm, tmp_path, runtime_dir, tools=TOOLS,
                                        max_run_seconds=16.0, last_call_seconds=4.0,
                                        max_steps=10, resample_repeats=0), "Find it")
    # The sleeping step was cut when only the reserve was left; the last call ran in it.
    assert result.status == "answered" and result.answer == "partial", (
        result.reason, [(r.status, r.last_call, r.exec_duration, r.reason) for r in result.steps])
    assert result.steps[0].timed_out and result.steps[-1].last_call == "time limit"
    assert len(result.steps) == 2 and took < 16.0 + 10


def test_a_last_call_that_does_not_answer_keeps_the_budget_status(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence("x = 1"), "No code, and no answer.")
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, max_steps=1,
                        resample_repeats=0).run("Never finish")
    assert result.status == "max_steps" and "step budget exhausted" in result.reason
    assert [(s.status, s.last_call) for s in result.steps] == [("ok", ""),
                                                                ("no-code", "step budget")]
    # A model that fails on the last call (no reply is left for it) does not turn the
    # run into an error.
    llm.enqueue(fence("x = 2"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, max_steps=1,
                        resample_repeats=0).run("Never finish")
    assert result.status == "max_steps"
    assert "the last call for an answer failed" in result.reason
    assert load_trace(result.trace_path).metadata["codeact"]["status"] == "max_steps"


def test_without_answer_on_budget_the_run_ends_at_its_budget(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence("x = 1"), fence("final_answer(x)"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, max_steps=1,
                        answer_on_budget=False).run("Never finish")
    assert result.status == "max_steps" and len(result.steps) == 1
    assert len(llm.requests) == 1


def test_old_observations_are_compacted_past_the_token_budget(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    noisy = "for i in range(300):\n    print('line', i, 'x' * 40)"
    llm.enqueue(fence(noisy + "\nprint('first')"), fence(noisy + "\nprint('second')"),
                fence("final_answer(3)"))
    agent = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, max_prompt_tokens=3000)
    result = agent.run("x")
    assert result.answer == 3
    third = llm.requests[2]["messages"]
    observations = [str(m["content"]) for m in third[2:] if m["role"] == "user"]
    assert observations[0].startswith("[compacted] Step 1 output:")
    assert len(observations[0]) < 500
    assert not observations[1].startswith("[compacted]")  # the latest stays whole
    # The trace keeps the whole output of the compacted step.
    nb = load_trace(result.trace_path)
    assert "line 299" in "".join(o.get("text", "") for o in code_cells(nb)[0].outputs)


# ---- degenerate answers --------------------------------------------------------------------


def test_empty_answer_is_held_back_once_then_fixed(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence('board = departures("LIS")\n'
                      'final_answer([f["flight"] for f in board["flights"] '
                      'if f["status"] == "Cancelled"])'),
                fence('final_answer([f["flight"] for f in board["flights"] '
                      'if f["status"].lower() == "cancelled"])'))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("Cancelled flights?")
    assert result.answer == ["U2"] and len(result.steps) == 2
    assert result.steps[0].reason == "final answer held back: empty"
    cell = code_cells(load_trace(result.trace_path))[0]  # the trace records the hold
    assert cell.metadata["codeact"]["reason"] == "final answer held back: empty"
    assert "final_answer received [], which is empty" in user_texts(llm.requests[1])[-1]


def test_degenerate_answer_sent_again_is_accepted(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence("final_answer(None)"), fence("final_answer(None)"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("x")
    assert result.status == "answered" and result.answer is None
    assert len(result.steps) == 2


def test_answer_check_off_accepts_at_once(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence("final_answer([])"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, check_answers=False).run("x")
    assert result.status == "answered" and result.answer == [] and len(result.steps) == 1


def test_degenerate_kinds() -> None:
    assert degenerate(0.0, after_failure=True).startswith("0 after a failed step")
    assert degenerate(0.0, after_failure=False) == ""
    assert degenerate(False, after_failure=True) == ""
    assert degenerate("default1 default2", after_failure=False) == "a placeholder"
    assert degenerate(float("nan"), after_failure=False) == "NaN"
    assert degenerate("Antwerp depot", after_failure=False) == ""
    assert degenerate(["U2"], after_failure=False) == ""


# ---- the tools' listing --------------------------------------------------------------------


def test_signature_listing_has_no_def_and_keeps_the_docs(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(fence("final_answer(airport_code('Lisbon'))"))
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS,
                        tool_listing="signature").run("x")
    assert result.answer == "LIS"
    system = llm.requests[0]["messages"][0]["content"]
    assert "- departures(airport: str, page_token: str = '') -> dict[str, Any]\n" \
        "    One page of an airport's departures board.\n    Args:\n" \
        "        airport: The 3-letter IATA code." in system
    assert "def departures" not in system and '"""' not in system
