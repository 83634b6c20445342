"""The first step's answer by a vote over sampled replies (``Agent.vote_samples``).

A greedy small model that misreads a task misreads it the same way every time, while
replies sampled at a temperature err in different directions. On the unseen tasks' tuning
half, the embedded 1.5B model answered ``rovers_top_scorer`` greedily from a guessed team
id ('Ola Berg'), and three of four samples looked the team up ('Max Dorn', right); on
``leader_squad_goals`` the greedy code failed and one sample answered (16, right). So after
the first step, more replies to the same start are sampled and run, and the answer most
runs give wins; the greedy reply keeps a tie, and a run with no answer at all goes on from
the greedy reply, as without a vote. Samples call the tools again, so the vote is off by
default and for tools without side effects.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..tools.serialize import FinalAnswer
from .recovery import degenerate
from .results import StepRecord

ANSWER_CHARS = 200  # of one ballot's answer, in the trace's tally


@dataclass
class Ballot:
    """One run of the first step: the greedy reply's (seed 0) or a sample's."""

    seed: int
    record: StepRecord
    answer: FinalAnswer | None
    messages: list[dict[str, Any]]

    @property
    def key(self) -> str | None:
        """What two answers share when they are the same vote; None for no answer, or one
        that looks like none (None, empty, NaN, a placeholder)."""
        if self.answer is None or degenerate(self.answer.value, after_failure=False):
            return None
        return json.dumps(_normal(self.answer.value), sort_keys=True, default=repr)


def _normal(value: Any) -> Any:
    """``value`` with the differences that do not make another answer removed: float
    noise past 6 significant digits, case and runs of spaces in strings."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value if isinstance(value, int) or not math.isfinite(value) \
            else float(f"{value:.6g}")
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _normal(v) for k, v in value.items()}
    return repr(value)


def winner(ballots: list[Ballot]) -> Ballot | None:
    """The ballot whose answer most ballots share: the greedy one (first) when it ties,
    else the earliest; None when no ballot answered."""
    counts = Counter(b.key for b in ballots if b.key is not None)
    if not counts:
        return None
    most = max(counts.values())
    greedy = ballots[0].key
    if greedy is not None and counts[greedy] == most:
        return ballots[0]
    return next(b for b in ballots if b.key is not None and counts[b.key] == most)


def tally(ballots: list[Ballot], chosen: Ballot | None) -> tuple[str, dict[str, Any]]:
    """The trace's note on the vote: a line per ballot, and the same as metadata."""
    counts = Counter(b.key for b in ballots if b.key is not None)
    rows: list[dict[str, Any]] = [{"seed": b.seed, "status": b.record.status or "no code",
             "answer": "no answer" if b.key is None or b.answer is None
             else repr(b.answer.value)[:ANSWER_CHARS],
             "votes": counts[b.key] if b.key is not None else 0, "chosen": b is chosen}
            for b in ballots]
    if chosen is None:
        head = "no run answered, so the run goes on from the greedy reply"
    else:
        head = (f"the answer of {_who(chosen.seed)} wins, given by {counts[chosen.key or '']} of "
                f"{len(ballots)} runs")
    lines = [f"**Vote on step {ballots[0].record.step}:** {head}.", ""]
    lines += [f"- {_who(r['seed'])}: {r['status']}, {r['answer']}"
              + (" (chosen)" if r["chosen"] else "") for r in rows]
    return "\n".join(lines), {"ballots": rows, "chosen": None if chosen is None else chosen.seed}


def _who(seed: int) -> str:
    return "the greedy reply" if seed == 0 else f"sample {seed}"
