"""48 tool-using tasks the agent was never tuned on, and their fixed tuning/held-out split.

Eight domains unlike the 13 tasks of local_tasks.py (flights, a football league, chemistry
and units, a git history, parcel shipping, utility meters, a university registry, a cinema),
six tasks each: two easy, two medium, two hard. They exercise paged tools (a ``next_page``
token), chains of three or more tools, conditionals, tool errors that say what to do next,
answers that must be computed, and domains with both a listing and a lookup tool. Every tool
is deterministic, offline and instant; see benchmarks/unseen/ for the data.

The split was fixed before any tuning, by ``random.Random(14)`` choosing, for each domain and
each difficulty, one of its two tasks for the held-out half (``choose_held_out()``); the names
are written out below so that nothing can move them quietly. Tune on ``TUNING`` only.
``HELD_OUT_SHA256`` is the hash of the held-out half as it was fixed: names, prompts, checkers
(what they accept), required tools, and the source and data of every tool offered.
``split_sha256()`` recomputes it, the runner prints both, and a test fails if they differ: a
change to a held-out task must show, and must come with a new hash in the same commit.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unseen import (  # the task modules sit beside this script
    chemistry,
    cinema,
    commits,
    courses,
    flights,
    league,
    meters,
    shipping,
)
from unseen.common import UnseenTask

DOMAINS = (flights, league, chemistry, commits, shipping, meters, courses, cinema)
TASKS: tuple[UnseenTask, ...] = tuple(t for domain in DOMAINS for t in domain.TASKS)
BY_NAME = {t.name: t for t in TASKS}

HELD_OUT_NAMES = (
    "flight_actual_departure", "porto_after_noon", "porto_flying_seats",
    "eastbrook_home_wins", "eastbrook_biggest_win", "negative_goal_diff",
    "marathon_miles", "heavier_liquid", "caffeine_mass",
    "latest_search_commit", "hot_file_recent", "main_top_author",
    "parcel_pounds", "parcel_transit_hours", "harlow_slowest",
    "reading_on_date", "annex_gas_first_reading", "annex_electricity_cost",
    "course_credits_total", "maria_average", "cs210_over_80",
    "screening_count", "family_tickets_sc14", "last_night_harbour_end",
)
HELD_OUT_SHA256 = "b503be607fccd2fb73fcb584b59d885563fb78ce1afc2167271fb7c0ae105c7c"

HELD_OUT: tuple[UnseenTask, ...] = tuple(BY_NAME[n] for n in HELD_OUT_NAMES)
TUNING: tuple[UnseenTask, ...] = tuple(t for t in TASKS if t.name not in HELD_OUT_NAMES)


def choose_held_out(seed: int = 14) -> tuple[str, ...]:
    """How HELD_OUT_NAMES was drawn: per domain and difficulty, one task of the two."""
    rng = random.Random(seed)
    chosen = []
    for domain in DOMAINS:
        for level in ("easy", "medium", "hard"):
            pair = [t.name for t in domain.TASKS if t.difficulty == level]
            chosen.append(rng.choice(pair))
    return tuple(chosen)


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def tool_fingerprint(fn: Callable[..., Any], seen: set[str] | None = None) -> dict[str, str]:
    """A tool's source and everything module-level it reads (data as repr, helper functions
    by their own fingerprint), so that changing a tool's data changes the hash."""
    seen = set() if seen is None else seen
    module = fn.__module__
    out = {f"{module}.{fn.__name__}": inspect.getsource(fn)}
    seen.add(f"{module}.{fn.__name__}")
    names = sorted({n for code in _code_objects(fn.__code__) for n in code.co_names})
    package = module.split(".")[0]
    for name in names:
        value = fn.__globals__.get(name)
        if isinstance(value, types.FunctionType):
            # Helpers of the task package (paging, say) count; the standard library does not.
            key = f"{value.__module__}.{value.__name__}"
            if value.__module__.split(".")[0] == package and key not in seen:
                out.update(tool_fingerprint(value, seen))
        elif isinstance(value, (dict, list, tuple, str, int, float, frozenset, set)):
            key = f"{module}.{name}"
            if key not in seen:
                seen.add(key)
                out[key] = repr(value)
    return out


def task_record(task: UnseenTask) -> dict[str, Any]:
    """What the hash covers of one task."""
    tools: dict[str, str] = {}
    for fn in task.tools:
        tools.update(tool_fingerprint(fn))
    return {
        "name": task.name, "domain": task.domain, "difficulty": task.difficulty,
        "prompt": task.prompt, "check": task.check.describe(),
        "tools": [fn.__name__ for fn in task.tools],
        "required": [fn.__name__ for fn in task.required],
        "sources": tools,
    }


def split_sha256(tasks: tuple[UnseenTask, ...] = HELD_OUT) -> str:
    """sha256 over the records of ``tasks``, in the order of HELD_OUT_NAMES."""
    text = json.dumps([task_record(t) for t in tasks], sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


SETS: dict[str, tuple[UnseenTask, ...]] = {"tuning": TUNING, "held_out": HELD_OUT}


if __name__ == "__main__":
    print("held-out split sha256:", split_sha256(), "(recorded:", HELD_OUT_SHA256 + ")")
    print("drawn again:", choose_held_out() == HELD_OUT_NAMES)
