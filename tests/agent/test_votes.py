"""The first step decided by a vote over sampled replies (Agent.vote_samples), through the
real path: scripted replies through litellm, a real sandboxed kernel that runs every
sample, and the real trace notebook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codeact_kernel import tool
from codeact_kernel.agent.results import StepRecord
from codeact_kernel.agent.votes import Ballot, winner
from codeact_kernel.tools.serialize import FinalAnswer

from ..helpers import code_cells, fence, load_trace, make_agent
from ..scripted_llm import ScriptedLLMServer

CALLS: list[str] = []


@tool
def squad(team_id: str) -> list[dict[str, Any]]:
    """A team's players and their goals.

    Args:
        team_id: The team's id, from team_id(name).
    """
    CALLS.append(team_id)
    players = {"T01": [{"player": "Ola Berg", "goals": 4}],
               "T07": [{"player": "Max Dorn", "goals": 9}, {"player": "Ivo Peric", "goals": 2}]}
    return players[team_id]


@tool
def team_id(name: str) -> str:
    """The id of a team, by its name."""
    return {"rovers": "T07"}[name.lower()]


TOOLS = [squad, team_id]
GUESSED = fence('final_answer(max(squad("T01"), key=lambda p: p["goals"])["player"])')
LOOKED_UP = fence('players = squad(team_id("Rovers"))\n'
                  'final_answer(max(players, key=lambda p: p["goals"])["player"])')
FAILS = fence('final_answer(squad("Rovers")[0]["player"])')  # KeyError in the tool


def model_requests(llm: ScriptedLLMServer) -> list[dict[str, Any]]:
    return [r for r in llm.requests if any(m["role"] == "user" for m in r["messages"])]


def test_samples_outvote_a_greedy_answer_and_every_run_is_in_the_trace(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    CALLS.clear()
    llm.enqueue(GUESSED, LOOKED_UP, FAILS, LOOKED_UP)
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, vote_samples=3).run(
        "Who is the Rovers' top scorer?")
    assert result.status == "answered" and result.answer == "Max Dorn"
    # One step, the sample that won; the other runs are samples, paid for in the totals.
    assert len(result.steps) == 1 and result.steps[0].sample == 1
    assert [s.sample for s in result.samples] == [0, 2, 3]
    assert result.completion_tokens == sum(
        s.completion_tokens for s in [*result.steps, *result.samples])
    assert CALLS == ["T01", "T07", "Rovers", "T07"]  # each run really ran in the kernel
    greedy, *samples = model_requests(llm)
    assert greedy["temperature"] == 0 and "seed" not in greedy
    assert [(s["temperature"], s["seed"]) for s in samples] == [(0.7, 1), (0.7, 2), (0.7, 3)]
    assert all(s["messages"] == greedy["messages"] for s in samples)  # the same start
    nb = load_trace(result.trace_path)
    assert [c.metadata["codeact"].get("sample", 0) for c in code_cells(nb)] == [0, 1, 2, 3]
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"
                and c.metadata.get("codeact", {}).get("role") == "model"]
    assert headings == ["**Step 1 · model**", "**Step 1 · model, sample 1**",
                        "**Step 1 · model, sample 2**", "**Step 1 · model, sample 3**"]
    vote = next(c for c in nb.cells if c.metadata.get("codeact", {}).get("role") == "vote")
    assert vote.metadata["codeact"]["chosen"] == 1
    assert [b["votes"] for b in vote.metadata["codeact"]["ballots"]] == [1, 2, 0, 2]
    assert "sample 1 wins, given by 2 of 4 runs" in vote.source
    assert "'Ola Berg'" in vote.source and "no answer" in vote.source


def test_a_tie_keeps_the_greedy_answer(llm: ScriptedLLMServer, tmp_path: Path,
                                       runtime_dir: Path) -> None:
    llm.enqueue(GUESSED, LOOKED_UP)
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, vote_samples=1).run("x")
    assert result.answer == "Ola Berg" and result.steps[0].sample == 0


def test_a_sample_answers_when_the_greedy_code_failed(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(FAILS, LOOKED_UP)
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, vote_samples=1).run("x")
    assert result.status == "answered" and result.answer == "Max Dorn"
    assert [s.status for s in result.samples] == ["error"]


def test_without_any_answer_the_run_goes_on_from_the_greedy_reply(
        llm: ScriptedLLMServer, tmp_path: Path, runtime_dir: Path) -> None:
    llm.enqueue(FAILS, fence("final_answer(undefined_name)"), LOOKED_UP)
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS, vote_samples=1).run("x")
    assert result.answer == "Max Dorn" and len(result.steps) == 2
    step_two = model_requests(llm)[-1]["messages"]
    # The greedy conversation (its KeyError), not the sample's NameError, numbered step 1.
    assert "KeyError" in step_two[-1]["content"] and "Step 1 output" in step_two[-1]["content"]
    assert not any("undefined_name" in str(m["content"]) for m in step_two)
    assert step_two[-2]["content"] == FAILS


def test_no_vote_by_default(llm: ScriptedLLMServer, tmp_path: Path,
                            runtime_dir: Path) -> None:
    llm.enqueue(GUESSED)
    result = make_agent(llm, tmp_path, runtime_dir, tools=TOOLS).run("x")
    assert result.answer == "Ola Berg" and result.samples == []
    assert len(model_requests(llm)) == 1


def _ballot(seed: int, value: Any) -> Ballot:
    answer = None if value is ... else FinalAnswer(value, "json")
    return Ballot(seed, StepRecord(step=1, model_text="", code=""), answer, [])


def test_winner_counts_equal_answers_and_ignores_empty_ones() -> None:
    # Case and spacing do not make another answer; None and [] are no answer.
    ballots = [_ballot(0, 3.0), _ballot(1, "Calculus  I"), _ballot(2, None),
               _ballot(3, "calculus i"), _ballot(4, [])]
    assert winner(ballots) is ballots[1]  # two of five against the greedy reply's one
    # Float noise does not either; and a tie keeps the greedy reply's answer.
    noisy = winner([_ballot(0, 3), _ballot(1, 0.1 + 0.2), _ballot(2, 0.3)])
    assert noisy is not None and noisy.seed == 1
    tie = winner([_ballot(0, 3), _ballot(1, 4)])
    assert tie is not None and tie.seed == 0
    assert winner([_ballot(0, ...), _ballot(1, None), _ballot(2, "")]) is None
