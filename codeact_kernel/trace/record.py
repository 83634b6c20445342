"""One agent step as the trace keeps it: the reply, the code, what the kernel did with it,
and every verdict on it (policy, approvals, repairs, samples)."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from nbformat import NotebookNode

from ..kernels.execution import ExecutionResult
from ..models.blocks import strip_code
from ..policy.walk import Violation
from .caps import cap_outputs

if TYPE_CHECKING:
    from ..models.llm import Completion


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
    # Output the session dropped past its budget ({"bytes", "messages"}), or None.
    output_dropped: dict[str, int] | None = None
    lost_channels: list[str] = field(default_factory=list)
    # One note per output kept cut in the trace: index, original size, sha256, marker.
    outputs_cut: list[dict[str, Any]] = field(default_factory=list)
    # Stub repair: the model's code as it came, and what was changed before it ran.
    repaired_from: str = ""
    repairs: list[str] = field(default_factory=list)
    cycle_of: int | None = None  # the earlier step this failed attempt repeated
    # A greedy reply that repeated failed code, sampled again (resample.Resampled).
    resampled: dict[str, Any] | None = None
    # The budget whose end made this step the run's last call for an answer, if any.
    last_call: str = ""

    @classmethod
    def from_completion(cls, step: int, completion: Completion, code: str | None,
                        ) -> StepRecord:
        """A step's record as its reply left it: the prose (the whole reply when it has
        no code), the code, and what the reply cost."""
        return cls(step=step, code=code, model=completion.model,
                   model_text=strip_code(completion.text) if code is not None
                   else completion.text,
                   prompt_tokens=completion.prompt_tokens,
                   completion_tokens=completion.completion_tokens, cost=completion.cost,
                   llm_duration=round(completion.duration, 4))

    @classmethod
    def cut_short(cls, step: int, streamed: str, seconds: float, last_call: str = ""
                  ) -> StepRecord:
        """A step whose reply the run's time limit cut: what the model had written by
        then, so that the trace shows where the time went."""
        said = streamed.strip() or "*(nothing yet)*"
        return cls(step=step, code=None, status="cut", llm_duration=round(seconds, 4),
                   last_call=last_call,
                   model_text=f"{said}\n\n*(cut: the run's time limit ran out after "
                   f"{seconds:.0f} s of this reply)*",
                   reason="the run's time limit ran out while the model was replying")

    @property
    def blocked(self) -> bool:
        return not self.policy.get("allowed", True)

    def deny_code(self, why: str, approvals: list[dict[str, Any]]) -> None:
        """The human (or the approval's timeout) refused this step's code: the trace
        shows it as blocked, like code the policy refused."""
        denied = Violation("confirm-code", why,
                           hint="Change the approach, or ask for what you need.")
        self.policy = {"allowed": False, "violations": [asdict(denied)]}
        self.status, self.approvals = "blocked", approvals

    def record_execution(self, result: ExecutionResult, max_output_bytes: int) -> None:
        """Keep what the kernel did with this step's code, each output (cleared ones
        too) capped to ``max_output_bytes``: the run keeps only these, the full ones die
        with the step."""
        self.status, self.execution_count = result.status, result.execution_count
        self.outputs, self.outputs_cut = cap_outputs(result.outputs, max_output_bytes)
        self.exec_duration = round(result.duration, 4)
        self.recovery, self.state_lost = result.recovery, result.state_lost
        self.timed_out = result.timed_out
        self.reason, self.output_dropped = result.reason, result.output_dropped
        self.cleared_outputs, _ = cap_outputs(result.cleared_outputs, max_output_bytes)
        self.cleared_outputs_dropped = result.cleared_dropped
        self.egress = result.egress
        self.lost_channels = list(result.lost_channels)

    def metadata(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it would deep-copy the outputs only to drop them.
        meta = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)
                if f.name not in ("model_text", "code", "outputs")}
        for key in ("cleared_outputs", "cleared_outputs_dropped", "output_dropped",
                    "lost_channels", "outputs_cut", "actions", "resampled", "last_call"):
            if not meta[key]:
                meta.pop(key)  # most steps clear, drop, lose and cut nothing
        return meta
