"""What one agent run produced, as data: its steps, its totals, its progress events."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nbformat import NotebookNode

from ..kernels.execution import ExecutionResult


@dataclass
class StepRecord:
    """Everything the trace keeps about one agent step."""

    step: int
    model_text: str
    code: str | None
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    llm_duration: float = 0.0
    exec_duration: float = 0.0
    status: str = ""
    execution_count: int | None = None
    outputs: list[NotebookNode] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    # A reply's native function calls (action_format json/auto), as json_actions.Action.
    actions: list[dict[str, Any]] = field(default_factory=list)
    egress: list[dict[str, Any]] = field(default_factory=list)  # network requests, judged
    policy: dict[str, Any] = field(default_factory=lambda: {"allowed": True, "violations": []})
    approvals: list[dict[str, Any]] = field(default_factory=list)  # decisions on held calls
    observation_truncated: bool = False
    outputs_key: int | None = None  # _outputs[key] holds the whole text the model saw cut
    recovery: str = "none"
    state_lost: bool = False
    timed_out: bool = False
    reason: str = ""
    cleared_outputs: list[NotebookNode] = field(default_factory=list)
    cleared_outputs_dropped: int = 0
    # What the host noticed for the auditor: malformed kernel messages, hooks or threads
    # the step's code left behind, a late or forged end of step, an unreadable probe.
    flags: list[str] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return not self.policy.get("allowed", True)

    def record_execution(self, result: ExecutionResult) -> None:
        """Keep what the kernel did with this step's code."""
        self.status, self.execution_count = result.status, result.execution_count
        self.outputs, self.exec_duration = result.outputs, round(result.duration, 4)
        self.recovery, self.state_lost = result.recovery, result.state_lost
        self.timed_out = result.timed_out
        self.reason = result.reason
        self.cleared_outputs = result.cleared_outputs
        self.cleared_outputs_dropped = result.cleared_dropped
        self.egress = result.egress

    def metadata(self) -> dict[str, Any]:
        meta = asdict(self)
        for key in ("model_text", "code", "outputs"):
            meta.pop(key)
        for key in ("cleared_outputs", "cleared_outputs_dropped", "actions"):
            if not meta[key]:
                meta.pop(key)  # most steps clear nothing
        return meta


@dataclass
class AgentEvent:
    """A progress event for live displays (CLI, %%agent). ``kind`` is one of:
    thinking, token, code, output, blocked, observation, step_end, final."""

    kind: str
    step: int
    data: Any = None


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
