"""A step's reply from the model: streamed as it comes, sampled again when it cannot move
the run forward (resample.py) while the run has the time, and cut at the run's limit.

A cut reply is still a step of the trace: on the unseen tasks' tuning half, the runs that
ended at their time limit had spent their last 50 s on replies nobody saw until the trace
kept what had streamed by then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .resample import Resampled, fresh_reply

if TYPE_CHECKING:
    from ..models.llm import LLM, Completion
    from .recovery import CycleTracker, RecoveryOptions, RunClock


class ReplyCut(TimeoutError):
    """The run's time limit cut a model reply; the trace has that step as far as it came."""


async def step_reply(
    llm: LLM, messages: list[dict[str, Any]], specs: Any, *, options: RecoveryOptions,
    cycles: CycleTracker, clock: RunClock, emit: Callable[[str, Any], None],
    on_cut: Callable[[str, float], None], calls_only: bool = False, last_call: bool = False,
) -> tuple[Completion, Resampled | None]:
    """The model's reply to ``messages`` (``specs``: the functions it may call), within the
    time ``clock`` has left. A last call has the time for one reply: it is not sampled again.
    When the time runs out first, ``on_cut(what streamed, seconds)`` records the step and
    :class:`ReplyCut` is raised."""
    left, began = clock.left(), time.monotonic()
    streamed: list[str] = []

    def on_token(text: str) -> None:
        streamed.append(text)
        emit("token", text)

    async def reply() -> tuple[Completion, Resampled | None]:
        completion = await llm.complete(messages, on_token, specs)
        clock.replied(completion.duration)
        return await fresh_reply(llm, messages, specs, completion, cycles,
                                 0 if last_call else options.resample_repeats,
                                 options.resample_temperature, calls_only=calls_only,
                                 time_left=clock.left)

    try:
        return await asyncio.wait_for(
            reply(), timeout=None if left == float("inf") else max(left, 0.5))
    except TimeoutError as exc:
        on_cut("".join(streamed), time.monotonic() - began)
        raise ReplyCut from exc
