"""What one agent run produced, as data: its steps, its totals, its progress events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..trace.record import StepRecord


@dataclass
class AgentEvent:
    """A progress event for live displays (CLI, %%agent). ``kind`` is one of:
    thinking, token, code, output, blocked, observation, step_end, final."""

    kind: str
    step: int
    data: Any = None


def emitter(on_event: Callable[[AgentEvent], Any] | None, step: int,
            ) -> Callable[[str, Any], None]:
    """``emit(kind, data)`` for ``step``: an AgentEvent to ``on_event``, if any."""
    def emit(kind: str, data: Any) -> None:
        if on_event is not None:
            on_event(AgentEvent(kind, step, data))

    return emit


@dataclass
class RunResult:
    """How a run ended. ``status``: answered, max_steps, timeout, error or interrupted."""

    status: str
    answer: Any = None
    answer_kind: str = ""
    reason: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    trace_path: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "answered"

    def add_step(self, record: StepRecord) -> None:
        """Count a finished step in the run's steps and totals."""
        self.steps.append(record)
        self.prompt_tokens += record.prompt_tokens
        self.completion_tokens += record.completion_tokens
        self.cost += record.cost or 0.0

    def totals(self) -> dict[str, Any]:
        return {
            "steps": len(self.steps),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "duration": round(self.duration, 3),
        }
