"""A reply that cannot move the run forward is sampled again before anything runs.

A greedy model (temperature 0) given nearly the same context sends the same reply. On the
unseen tasks' tuning half the embedded 1.5B model sent ``sum(show_commit(sha) ... for sha
in git_log("main")["commits"])`` six times in a row after the same TypeError, with or
without the pruned context of ``break_cycles``; it answered a task's first turn with a plan
and no code; and it sent ``# Your implementation here`` five steps running. Each such reply
costs a step and teaches nothing. So when a reply has no code (and calls no function), or
code without a statement, or code the run already saw fail or the policy block (in
action_format json: when it calls no function), the same
request is sent again at a temperature, with a fixed seed per try so that a run can be
repeated, until a reply brings code that does something new; the step then runs that one.
If none does (or a sample request fails), the greedy reply goes on as before. The trace
keeps what was replaced, why, and every sample's tokens.

A sample is drawn only while the run has the time for one (as long as the greedy reply
took): on the tuning half, a step whose greedy reply repeated failed code spent its last
50 s on samples none of which came back, and the last call behind it did the same.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from ..models.blocks import extract_code

if TYPE_CHECKING:
    from ..models.llm import LLM, Completion
    from .recovery import CycleTracker


@dataclass
class Resampled:
    """What choosing a new reply did, for the step's record."""

    reason: str  # "repeat", "no code", "no statement", or (json) "no call"
    samples: int  # replies sampled at the temperature
    found: bool  # whether one of them brought code that does something new
    original: str  # the greedy reply: its code, or its text when it had none
    repeated_step: int | None = None  # for a repeat: the failed step it repeated
    out_of_time: bool = False  # sampling stopped: no time was left for another sample

    def record(self) -> dict[str, Any]:
        """The step's record of it (``out_of_time`` only when it happened)."""
        kept = asdict(self)
        if not self.out_of_time:
            kept.pop("out_of_time")
        return kept


def why_again(completion: Completion, cycles: CycleTracker,
              calls_only: bool = False) -> tuple[str, int | None]:
    """Why ``completion`` cannot move the run forward ('' when it can), and for a repeat,
    the step it repeats. ``calls_only``: the reply must call a function (action_format
    json), its text is not run."""
    if completion.tool_calls:
        return "", None
    if calls_only:
        return "no call", None
    code = extract_code(completion.text)
    if code is None:
        return "no code", None
    if not _does_something(code):
        return "no statement", None
    earlier = cycles.repeated(code)
    return ("repeat", earlier.step) if earlier is not None else ("", None)


async def fresh_reply(llm: LLM, messages: list[dict[str, Any]], tools: Any,
                      completion: Completion, cycles: CycleTracker, tries: int,
                      temperature: float, calls_only: bool = False,
                      time_left: Callable[[], float] | None = None,
                      ) -> tuple[Completion, Resampled | None]:
    """``completion``, or a sampled reply in its place when it cannot move the run forward.
    Token counts, cost and time of every sample are added to the reply that is kept.
    ``time_left()``: the run's seconds left; no sample starts with less than the greedy
    reply took."""
    reason, step = why_again(completion, cycles, calls_only)
    if not reason or tries <= 0:
        return completion, None
    original = extract_code(completion.text) or completion.text
    spent = [completion]
    # Anthropic, for one, takes no seed: its samples are still drawn, just not repeatable.
    seeded = llm.takes_param("seed")
    for seed in range(1, tries + 1):
        if time_left is not None and time_left() < completion.duration:
            return _spent(completion, spent), Resampled(reason, seed - 1, False, original,
                                                        step, out_of_time=True)
        overrides: dict[str, Any] = {"temperature": temperature}
        if seeded:
            overrides["seed"] = seed
        try:
            sample = await llm.complete(messages, None, tools, overrides)
        except ModelError:  # a sample is a second chance, not a need: go on with the reply
            return _spent(completion, spent), Resampled(reason, seed - 1, False, original, step)
        spent.append(sample)
        if not why_again(sample, cycles, calls_only)[0]:
            return _spent(sample, spent), Resampled(reason, seed, True, original, step)
    return _spent(completion, spent), Resampled(reason, tries, False, original, step)


def _does_something(code: str) -> bool:
    """False for code of comments, ``pass``, ``...`` and bare strings only (code that does
    not parse is something: running it shows the model its error)."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError):
        return True
    return any(not isinstance(node, ast.Pass)
               and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
               for node in body)


def _spent(kept: Completion, spent: list[Completion]) -> Completion:
    costs = [c.cost for c in spent if c.cost is not None]
    return replace(kept, prompt_tokens=sum(c.prompt_tokens for c in spent),
                   completion_tokens=sum(c.completion_tokens for c in spent),
                   cost=sum(costs) if costs else None,
                   duration=sum(c.duration for c in spent))
