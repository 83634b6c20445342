"""The unseen task set: every task solvable, every checker strict, the split fixed and hashed.

Host-side only (the tools are plain functions): the kernel runs of these tasks are in
test_bench_runner.py.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import unseen_tasks as ut
from unseen import chemistry, cinema, courses, flights, league, meters, shipping
from unseen.common import KINDS, Number, UnseenTask

from codeact_kernel.tools import tool

# For each task whose kind says so: a natural wrong first call, and the tool its error must
# send the model to.
ADVICE = {
    "lisbon_cancelled": (flights.departures, ("Lisbon",), "airport_code"),
    "rovers_top_scorer": (league.squad, ("Rovers",), "team_id"),
    "leader_squad_goals": (league.squad, ("Eastbrook",), "team_id"),
    "marathon_miles": (chemistry.convert_length, (42.195, "kilometres", "miles"), "'km'"),
    "glucose_grams": (chemistry.molar_mass, ("glucose",), "formula_of"),
    "caffeine_mass": (chemistry.molar_mass, ("C8H10N4O2",), "element_mass"),
    "bluebird_undelivered": (shipping.track, ("Bluebird Books",), "find_shipments"),
    "annex_gas_first_reading": (meters.meter_readings, ("Annex gas",), "list_meters"),
    "maria_average": (courses.transcript, ("Maria Lopez",), "find_student"),
    "maria_weighted": (courses.transcript, ("Maria Lopez",), "find_student"),
    "family_tickets_sc14": (cinema.ticket_price, ("SC-14", "children"), "'child'"),
}
DEGENERATE: tuple[Any, ...] = (None, 0, 0.0, -1, [], (), {}, "", "None", "default1 default2",
                               True, float("nan"))


def run_solution(task: UnseenTask) -> tuple[list[Any], set[str]]:
    """Run a task's reference solution with its tools; return the answers and tools called."""
    answers: list[Any] = []
    called: set[str] = set()

    def counted(fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            called.add(fn.__name__)
            return result
        return call

    namespace: dict[str, Any] = {fn.__name__: counted(fn) for fn in task.tools}
    namespace["final_answer"] = answers.append
    exec(task.solution, namespace)
    return answers, called


def test_the_set_is_large_varied_and_a_third_hard() -> None:
    assert len(ut.TASKS) >= 48 and len(ut.BY_NAME) == len(ut.TASKS)
    domains = Counter(t.domain for t in ut.TASKS)
    assert len(domains) >= 6
    assert Counter(t.difficulty for t in ut.TASKS)["hard"] * 3 >= len(ut.TASKS)
    kinds = Counter(k for t in ut.TASKS for k in t.kinds)
    assert set(kinds) == set(KINDS)
    assert all(kinds[k] >= 3 for k in ("pagination", "chain", "conditional", "tool-advice"))
    assert {t.name for t in ut.TASKS if "tool-advice" in t.kinds} == set(ADVICE)


def test_the_split_is_balanced_by_domain_and_difficulty() -> None:
    assert set(ut.HELD_OUT_NAMES) | {t.name for t in ut.TUNING} == set(ut.BY_NAME)
    assert not set(ut.HELD_OUT_NAMES) & {t.name for t in ut.TUNING}
    held = Counter((t.domain, t.difficulty) for t in ut.HELD_OUT)
    tuning = Counter((t.domain, t.difficulty) for t in ut.TUNING)
    assert held == tuning and set(held.values()) == {1}


def test_the_split_is_the_seeded_draw_and_matches_its_recorded_hash() -> None:
    assert ut.choose_held_out() == ut.HELD_OUT_NAMES
    assert ut.split_sha256() == ut.HELD_OUT_SHA256, (
        "a held-out task changed (prompt, checker, tools or their data): that must be a "
        "deliberate, visible change with the new hash recorded in the same commit"
    )


def test_the_hash_covers_prompts_checkers_tool_sources_and_data() -> None:
    task = ut.HELD_OUT[0]
    base = ut.split_sha256()
    for change in ({"prompt": task.prompt + " "}, {"check": Number(-1.0)},
                   {"required": task.tools[:0]}):
        edited = (dataclasses.replace(task, **change), *ut.HELD_OUT[1:])
        assert ut.split_sha256(edited) != base
    sources = ut.task_record(ut.BY_NAME["annex_electricity_cost"])["sources"]
    assert {"unseen.meters._VALUES", "unseen.meters._TARIFFS", "unseen.common.paginate",
            "unseen.meters.meter_readings"} <= set(sources)
    assert "1462.4" in sources["unseen.meters._VALUES"]


@pytest.mark.parametrize("task", ut.TASKS, ids=lambda t: t.name)
def test_the_reference_solution_passes_with_every_required_tool(task: UnseenTask) -> None:
    answers, called = run_solution(task)
    assert len(answers) == 1 and task.check(answers[0]), (answers, task.expected)
    assert {fn.__name__ for fn in task.required} <= called


@pytest.mark.parametrize("task", ut.TASKS, ids=lambda t: t.name)
def test_degenerate_answers_fail(task: UnseenTask) -> None:
    passed = [v for v in DEGENERATE if task.check(v)]
    assert passed == []


@pytest.mark.parametrize("name", sorted(ADVICE))
def test_tool_errors_say_what_to_do(name: str) -> None:
    fn, args, advice = ADVICE[name]
    task = ut.BY_NAME[name]
    assert fn in task.tools
    with pytest.raises((ValueError, KeyError)) as info:
        fn(*args)
    assert advice in str(info.value)
    if advice.isidentifier():
        assert advice in {f.__name__ for f in task.tools}, "the advice names a tool not given"


@pytest.mark.parametrize("task", [t for t in ut.TASKS if "pagination" in t.kinds],
                         ids=lambda t: t.name)
def test_pagination_tasks_need_more_than_the_first_page(task: UnseenTask) -> None:
    def first_page_only(fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            page = dict(fn(*args[:1], **{k: v for k, v in kwargs.items() if k != "page_token"}))
            page["next_page"] = None
            return page
        return call

    paged = [fn for fn in task.tools if "page_token" in fn.__code__.co_varnames]
    assert paged
    answers: list[Any] = []
    namespace: dict[str, Any] = {fn.__name__: fn for fn in task.tools}
    namespace.update({fn.__name__: first_page_only(fn) for fn in paged})
    namespace["final_answer"] = answers.append
    exec(task.solution, namespace)
    assert len(answers) == 1 and not task.check(answers[0])


def test_pages_chain_by_their_tokens() -> None:
    first = flights.departures("LIS")
    assert first["next_page"] == "LIS-p2" and len(first["flights"]) == 4
    last = flights.departures("LIS", "LIS-p3")
    assert last["next_page"] is None and len(last["flights"]) == 2
    with pytest.raises(ValueError, match="next_page"):
        flights.departures("LIS", "2")


def test_every_tool_is_a_valid_documented_host_tool() -> None:
    for fn in {fn for t in ut.TASKS for fn in t.tools}:
        made = tool(fn)
        assert made.description
        for name in made.signature.parameters:
            assert name in made.param_docs, f"{made.name}: {name} is not documented"


def test_the_old_tasks_are_not_in_the_new_domains() -> None:
    import local_tasks

    old_tools = {fn.__name__ for t in local_tasks.TASKS for fn in t.tools}
    new_tools = {fn.__name__ for t in ut.TASKS for fn in t.tools}
    assert not old_tools & new_tools
