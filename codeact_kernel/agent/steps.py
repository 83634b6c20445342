"""The end of a step as the host confirms it, and what the step left in the kernel.

A step's ``execute_reply`` and idle status come from the kernel, which holds its own
HMAC key: model code can send both early and keep running (and calling tools) into the
next step. So the host does not take the end of a step from them. It sends one more
request, the end barrier, and the step ends when that request's reply arrives: the
kernel runs requests one at a time, so the barrier runs only after the step's code has
really returned (a cell still running after a forged reply delays it, and the step's
time limit interrupts it). Messages that still arrive for the step then are counted and
flagged. Forging the barrier's own reply too would take code that rewires the kernel's
request handlers; what the host guarantees regardless is on its own side (tool calls
outside the step window are refused; see docs/security.md).

The barrier is a silent execute of the kernel-side probe (kernel_side/probe.py, a module
out of the user's namespace): it removes hooks the step registered, and answers the
variables summary and its notes as application/json. The answer is untrusted: checked
here, capped, and flagged when unreadable; it never raises into the host.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..kernel_side import PROBE_MODULE, call, source, templates
from ..kernels.execution import ExecutionResult
from ..kernels.session import KernelSession

if TYPE_CHECKING:
    from ..tools.server import ToolServer
    from ..trace.notebook import TraceWriter

REPORT_KEY = "codeact"
REPORT_EXPRESSION = templates.PROBE_REPORT.substitute(module=repr(PROBE_MODULE))
END_STEP_CODE = templates.PROBE_END_STEP.substitute(module=repr(PROBE_MODULE))
REPORT_VERSION = 1
MAX_ROWS, MAX_FLAGS, MAX_TEXT = 100, 50, 400
MIN_BARRIER_TIMEOUT = 5.0


def probe_install_code() -> str:
    """Startup code that installs the probe module (keeping the first baseline across
    %reset, so hooks registered before a reset are still the model's)."""
    install = call("_codeact_install_probe", PROBE_MODULE, source("probe.py"))
    return source("probe_install.py") + install + "del _codeact_install_probe\n"


@dataclass
class Report:
    """The probe's answer, checked: variables rows, its notes, or why it is unreadable."""

    variables: list[dict[str, str]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    problem: str = ""


@dataclass
class StepEnd:
    """What confirming a step's end found."""

    barrier: ExecutionResult
    variables: list[dict[str, str]]
    flags: list[str]


def read_report(result: ExecutionResult) -> Report:
    """The probe's answer in ``result`` (untrusted JSON); never raises."""
    entry = result.user_expressions.get(REPORT_KEY)
    if not isinstance(entry, dict):
        return Report(problem=result.reason or f"no answer ({result.status})")
    if entry.get("status") != "ok":
        return Report(problem=f"{_text(entry.get('ename'))}: {_text(entry.get('evalue'))}")
    data = entry.get("data")
    payload = data.get("application/json") if isinstance(data, dict) else None
    if not isinstance(payload, dict) or payload.get("v") != REPORT_VERSION:
        return Report(problem="the answer is not the probe's JSON (was the probe replaced?)")
    rows, flags = payload.get("variables"), payload.get("flags")
    if not isinstance(rows, list) or not isinstance(flags, list):
        return Report(problem="the answer has no variables or flags list")
    return Report([_row(r) for r in rows[:MAX_ROWS] if isinstance(r, dict)],
                  [_text(f) for f in flags[:MAX_FLAGS]])


async def variables_now(session: KernelSession) -> Report:
    """The variables summary, outside any step (no barrier, no hook removal)."""
    result = await session.async_execute("", silent=True, store_history=False, timeout=10,
                                         user_expressions={REPORT_KEY: REPORT_EXPRESSION})
    return read_report(result)


async def execute_step(session: KernelSession, server: ToolServer, step: int, code: str,
                       timeout: float, **kwargs: Any) -> tuple[ExecutionResult, StepEnd]:
    """Run a step's code with the tool window open, until the host confirmed its end."""
    server.open_step(step)
    try:
        result = await session.async_execute(code, timeout=timeout, **kwargs)
        end = await confirm_end(session, result, timeout)
    finally:
        server.close_step()
    merge_barrier(result, end.barrier)
    return result, end


async def confirm_end(session: KernelSession, step: ExecutionResult,
                      timeout: float) -> StepEnd:
    """Run the end barrier after ``step`` (within what is left of ``timeout``)."""
    left = max(timeout - step.duration, MIN_BARRIER_TIMEOUT)
    barrier = await session.async_execute(END_STEP_CODE, timeout=left, silent=True,
                                          store_history=False,
                                          user_expressions={REPORT_KEY: REPORT_EXPRESSION})
    flags = message_flags(step, "during the step") + message_flags(barrier, "after it")
    late = barrier.foreign.get(step.msg_id, 0)
    if late:
        flags.append(f"the kernel sent {late} message(s) for this step after its reply "
                     "(output of code still running, or a forged end of step); the end "
                     "was confirmed by a later request")
    if barrier.timed_out or barrier.kernel_died:
        flags.append("the kernel was still busy after the step's reply (the step's code, or a "
                     f"__repr__ the variables probe called): {barrier.reason}")
    flags += process_flags(session)
    report = read_report(barrier)
    if report.problem:
        flags.append(f"the variables probe gave no readable answer: {report.problem}")
    return StepEnd(barrier, report.variables, flags + report.flags)


def process_flags(session: KernelSession) -> list[str]:
    """Processes the step left running in the sandbox, counted by the host itself (the
    one check here that code in the kernel cannot fake; None without a cgroup)."""
    now, setup = session.process_count(), session.setup_processes
    if now is None or setup is None or now <= setup:
        return []
    return [f"{now - setup} process(es) started by model code are still running in the "
            "sandbox (counted by the host): their tool calls during later steps count in "
            "those steps"]


def message_flags(result: ExecutionResult, when: str) -> list[str]:
    """A flag for the malformed messages the session ignored in ``result``."""
    if not result.rejected_count:
        return []
    return [f"{result.rejected_count} malformed kernel message(s) ignored {when}: "
            + "; ".join(result.rejected[:3])[:MAX_TEXT]]


def merge_barrier(result: ExecutionResult, barrier: ExecutionResult) -> None:
    """A step whose code outran its reply ends as the barrier found it: timed out,
    interrupted or restarted, with the barrier's reason for the model and the trace."""
    if barrier.timed_out or barrier.kernel_died:
        result.timed_out = result.timed_out or barrier.timed_out
        result.kernel_died = result.kernel_died or barrier.kernel_died
        result.recovery = barrier.recovery
        result.state_lost = result.state_lost or barrier.state_lost
        result.status = "died" if barrier.kernel_died else "timeout"
        result.reason = f"the kernel was still busy after the step's reply; {barrier.reason}"


def record_refused(trace: TraceWriter | None, server: ToolServer | None) -> None:
    """Put the tool calls refused since the last call in the trace (of the latest run)."""
    if trace is not None and server is not None:
        calls, count = server.window.drain_refused()
        trace.add_refused([asdict(c) for c in calls], count)


def _row(row: dict[str, Any]) -> dict[str, str]:
    return {key: _text(row.get(key)) for key in ("name", "type", "summary")}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value[:MAX_TEXT]
    return "" if value is None else f"<{type(value).__name__}>"  # no repr of nested JSON
