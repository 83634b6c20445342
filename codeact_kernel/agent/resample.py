"""A reply that repeats failed code is sampled again before anything runs.

A greedy model (temperature 0) given nearly the same context sends the same reply: on the
unseen tasks' tuning half the embedded 1.5B model sent ``league_table()[0]["team"]`` three
times in a row after each ``KeyError: 0``, with or without the pruned context of
``break_cycles``. Running that code again costs a step and teaches nothing. So when the
code of a new reply is one the run already saw fail (or the policy block), the same
request is sent again at a temperature, with a fixed seed per try so that a run can be
repeated, until a reply brings code not yet tried; the step then runs that one. The trace
keeps the repeated code and how many samples it took.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .prompt import extract_code

if TYPE_CHECKING:
    from ..models.llm import LLM, Completion
    from .recovery import CycleTracker


@dataclass
class Resampled:
    """What choosing a new reply did, for the step's record."""

    repeated_step: int  # the failed step whose code the greedy reply repeated
    samples: int  # replies sampled at the temperature
    found: bool  # whether one of them brought code not yet tried
    original: str  # the greedy reply's code

    def as_record(self) -> dict[str, Any]:
        return {"repeated_step": self.repeated_step, "samples": self.samples,
                "found": self.found, "original": self.original}


async def unrepeated(llm: LLM, messages: list[dict[str, Any]], tools: Any,
                     completion: Completion, cycles: CycleTracker, tries: int,
                     temperature: float) -> tuple[Completion, Resampled | None]:
    """``completion``, or a sampled reply in its place when its code repeats a failed
    attempt of the run. Token counts, cost and time of every sample are added to the
    reply that is kept."""
    code = extract_code(completion.text)
    earlier = cycles.repeated(code) if code is not None and not completion.tool_calls else None
    if earlier is None or tries <= 0:
        return completion, None
    spent = [completion]
    for seed in range(1, tries + 1):
        sample = await llm.complete(messages, None, tools,
                                    {"temperature": temperature, "seed": seed})
        spent.append(sample)
        new = extract_code(sample.text)
        if sample.tool_calls or (new is not None and cycles.repeated(new) is None):
            return _spent(sample, spent), Resampled(earlier.step, seed, True, code or "")
    return _spent(completion, spent), Resampled(earlier.step, tries, False, code or "")


def _spent(kept: Completion, spent: list[Completion]) -> Completion:
    costs = [c.cost for c in spent if c.cost is not None]
    return replace(kept, prompt_tokens=sum(c.prompt_tokens for c in spent),
                   completion_tokens=sum(c.completion_tokens for c in spent),
                   cost=sum(costs) if costs else None,
                   duration=sum(c.duration for c in spent))
