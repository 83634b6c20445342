"""The CodeAct loop: task -> model -> code -> policy -> sandboxed kernel -> observation.

The Agent owns one kernel session (never shared), one host-side tool server
and one trace notebook. It composes the model, policy, tools, observation and
trace modules and keeps none of their logic itself.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from jupyter_core.utils import run_sync

from ..errors import CodeActError, ModelError
from ..kernels.stdin import StdinHandler, StdinToolChannel
from ..models.blocks import extract_code
from ..telemetry.config import env_configured
from ..tools.hub import ToolHub
from ..tools.listing import function_specs, kernel_names, tool_meta
from ..tools.server import ToolServer
from ..tools.tool import Tool, tool
from ..trace.notebook import TraceWriter, answer_for_trace, tool_call_record
from ..trace.record import StepRecord
from .json_actions import assistant_message, json_step, parse_actions, require_function_calling
from .managed import ManagedAgentTool, SubAgents
from .observation import failure_note, format_variables, model_view
from .prompt import (
    CODE_NOT_RUN_MESSAGE,
    NO_CALL_MESSAGE,
    NO_CODE_MESSAGE,
    PREIMPORTED,
    last_call_message,
    render_system_prompt,
)
from .recovery import CycleTracker, RunClock, compact
from .repair import check_with_repair
from .reply import ReplyCut, step_reply
from .results import AgentEvent, RunResult, emitter
from .settings import RUN_META_SETTINGS, AgentSettings
from .steps import execute_step, record_refused, variables_now
from .workspace import keep_full_output, setup_code

EventCallback = Callable[[AgentEvent], Any]


class Agent(AgentSettings):
    """A CodeAct agent: the model acts by writing Python run in a sandboxed kernel.
    Its settings and parts are :class:`AgentSettings`' (settings.py)."""

    def __init__(
        self,
        model: str | None = None,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        *,
        api_base: str | None = None,
        api_key_env: str | None = None,
        managed_agents: Sequence[Agent] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if model is not None:
            self.llm.model = model
        if api_base is not None:
            self.llm.api_base = api_base
        if api_key_env is not None:
            self.llm.api_key_env = api_key_env
        self.tools = [t if isinstance(t, Tool) else tool(t) for t in tools]
        self.sub_agents = SubAgents(self, managed_agents, self.managed_agents_config)
        self.hub = ToolHub(self)  # MCP servers, the approval gate, the tool listing
        self._host_tools: list[Tool] | None = None  # self.tools as served, from astart
        self.tool_server: ToolServer | None = None
        self.trace: TraceWriter | None = None
        self.messages: list[dict[str, Any]] = []
        self.step_counter = 0
        self._cycles = CycleTracker()  # this run's failed attempts (recovery.py)
        self._started = False
        self.clock = RunClock()  # the running run's deadline (recovery.py)
        # Set by an orchestrator: the span a sub-agent's run nests under.
        self.otel_parent: dict[str, Any] | None = None
        self._otel: Any = None

    @property
    def managed_tools(self) -> list[ManagedAgentTool]:
        """The sub-agents, as the tools the model calls."""
        return self.sub_agents.tools

    @property
    def all_tools(self) -> list[Tool]:
        """Host tools (paged ones followed, once started), managed agents (which are tools
        too), then MCP servers' tools."""
        host = self.tools if self._host_tools is None else self._host_tools
        return [*host, *self.managed_tools, *self.hub.tools]

    # ---- lifecycle ---------------------------------------------------------------------

    async def astart(self) -> Agent:
        """Open the model (its provider, if it has one), then the kernel and the tools."""
        if self._started:
            return self
        await self.llm.astart()
        try:
            require_function_calling(self.action_format, self.llm)
        except ModelError:
            await self.llm.aclose()
            raise
        try:
            await self.session.async_start()
            assert self.session.session_dir is not None
            # HTTP clients follow the network.
            self.policy.egress = self.session.manager.egress is not None
            await self.hub.astart([t.name for t in [*self.tools, *self.managed_tools]])
            self._host_tools = self.hub.host_tools(self.tools)
            # The socket is reachable by other host users (the sandbox uid must
            # connect), so calls carry a per-session token only the kernel knows.
            self.tool_server = ToolServer(
                self.all_tools, self.session.session_dir / "tools.sock",
                call_timeout=self.tool_call_timeout, token=secrets.token_hex(16),
                require_step=True, max_answer_bytes=self.max_answer_bytes,
            )
            self.tool_server.gate = self.hub.gate.check
            self.tool_server.start()
            self.session.tool_handler = StdinToolChannel(self.tool_server).answer
            self.session.approval_handler = self.hub.gate.answer
            self.session.startup_code = setup_code(
                self.all_tools, self.tool_server, call_timeout=self.tool_call_timeout,
                transport=self.session.tool_transport, preimport=self.preimport)
            await self.session.async_run_startup_code()
        except BaseException:
            await self.aclose()
            raise
        self.trace = TraceWriter(self.trace_file(), self._run_meta())
        self._attach_telemetry(self.trace)
        self._started = True
        return self

    def _attach_telemetry(self, trace: TraceWriter) -> None:
        if not (self.otel_endpoint or env_configured()):
            return  # off: opentelemetry is never imported
        from ..telemetry.live import LiveExport

        self._otel = LiveExport(self.otel_endpoint, self.telemetry, agent_name=self.name,
                                model=self.llm.label, parent=self.otel_parent)
        trace.observers.append(self._otel)

    async def aclose(self) -> None:
        """Shut the kernel, the tool server and the model's provider down. Idempotent."""
        self._started = False
        await self.sub_agents.cancel()
        try:
            await self.session.async_shutdown()
        finally:
            if self.tool_server is not None:
                record_refused(self.trace, self.tool_server)  # the kernel is gone now
                self.tool_server.stop()
                self.tool_server = None
            self.hub.close()
            if self._otel is not None:
                self._otel.close()
                self._otel = None
            await self.llm.aclose()

    def _run_meta(self) -> dict[str, Any]:
        return {
            "model": self.llm.label,
            "agent": {
                **{name: getattr(self, name) for name in RUN_META_SETTINGS},
                "authorized_imports": sorted(self.policy.effective_imports()),
            },
            "tools": [tool_meta(t) for t in self.all_tools],
            **({"mcp": self.hub.meta()} if self.mcp_servers else {}),
            "sandbox": self.session.isolation,
        }

    # ---- the loop -----------------------------------------------------------------------

    async def arun(
        self,
        task: str,
        *,
        on_event: EventCallback | None = None,
        stdin_handler: StdinHandler | None = None,
        deadline: float | None = None,
        max_steps: int | None = None,
    ) -> RunResult:
        """Solve ``task``; starts (and then closes) the session if it is not running.

        ``deadline`` (a time.monotonic() value, set by an orchestrator) bounds the
        whole run: steps get at most the time left, and no step starts after it.
        ``max_steps`` is this run's step budget (``%%agent --max-steps``), else the
        ``max_steps`` setting.
        """
        owned = not self._started
        self.clock = RunClock.start(self, deadline)
        await self.astart()
        try:
            budget = self.max_steps if max_steps is None else max_steps
            return await self._run(task, on_event, stdin_handler, budget)
        finally:
            if owned:
                await self.aclose()

    async def _run(
        self, task: str, on_event: EventCallback | None, stdin_handler: StdinHandler | None,
        max_steps: int,
    ) -> RunResult:
        assert self.trace is not None and self.tool_server is not None
        started = time.monotonic()
        result = RunResult(status="running", trace_path=str(self.trace.path))
        record_refused(self.trace, self.tool_server)  # between runs: the last run
        self.trace.add_task(task)
        self.tool_server.reset_final_answer()
        await self._open_conversation(task)
        try:
            for step in range(1, max_steps + 1):
                try:
                    if not self.clock.room_for_step():
                        raise TimeoutError(self.clock.shortfall())
                    record = await self._step(step, emitter(on_event, step), stdin_handler)
                except TimeoutError as exc:  # no time left for a step, or a reply cut
                    result.status = "timeout"
                    result.reason = (f"the run's time limit ran out at step {step} "
                                     "(Agent.max_run_seconds, or the orchestrator's deadline)"
                                     + (f": {exc}" if str(exc) else ""))
                    step += isinstance(exc, ReplyCut)  # the trace has the cut step
                    break
                result.add_step(record)
                if self._answered(result):
                    break
            else:
                step = max_steps + 1
                result.status = "max_steps"
                result.reason = (
                    f"step budget exhausted: {max_steps} steps ran without final_answer(); "
                    "the kernel keeps its state, so a follow-up run can continue"
                )
            if result.status != "answered" and self.answer_on_budget:
                await self._last_call(result, step, on_event, stdin_handler)
        except CodeActError as exc:
            # A model that fails, a remote kernel that is lost: the run ends with its
            # reason and the trace is closed, instead of an exception losing both.
            result.status, result.reason = "error", f"{type(exc).__name__}: {exc}"
        except (asyncio.CancelledError, KeyboardInterrupt):
            result.status, result.reason = "interrupted", "interrupted by the user"
            self._close_run(result, started)
            raise
        except Exception as exc:
            # A failure of the host itself: the trace still ends, with the reason.
            result.status, result.reason = "error", f"internal error: {type(exc).__name__}: {exc}"
            self._close_run(result, started)
            raise
        self._close_run(result, started)
        if on_event is not None:
            on_event(AgentEvent("final", len(result.steps), result))
        return result

    def _answered(self, result: RunResult) -> bool:
        """Whether the run has its final answer (then in ``result``)."""
        assert self.tool_server is not None
        answer = self.tool_server.final_answer
        if answer is not None:
            result.status, result.answer, result.answer_kind = (
                "answered", answer.value, answer.kind,
            )
        return answer is not None

    async def _last_call(
        self, result: RunResult, step: int, on_event: EventCallback | None,
        stdin: StdinHandler | None,
    ) -> None:
        """One more step, with the time held back for it: the model is asked for its
        final answer from what the run computed (Agent.answer_on_budget)."""
        budget = "step budget" if result.status == "max_steps" else "time limit"
        self.clock.release()
        if self.clock.left() <= 0:
            result.reason += "; no time was left for a last call for an answer"
            return
        try:
            variables = format_variables(await self.variables())
            self.messages.append({"role": "user", "content": last_call_message(budget,
                                                                              variables)})
            record = await self._step(step, emitter(on_event, step), stdin, last_call=budget)
        except TimeoutError:  # the model's reply outlasted the time held back for it
            result.reason += "; the last call for an answer ran out of time too"
            return
        except CodeActError as exc:  # a model or kernel failing: the budget's status stays
            result.reason += f"; the last call for an answer failed: {exc}"
            return
        result.add_step(record)
        if self._answered(result):
            result.reason = f"answered on the last call, after the {budget} ran out"

    def _close_run(self, result: RunResult, started: float) -> None:
        assert self.trace is not None and self.tool_server is not None
        result.duration = time.monotonic() - started
        record_refused(self.trace, self.tool_server)
        answer = self.tool_server.final_answer
        self.trace.finish(
            result.status,
            answer_for_trace(answer.value, answer.kind, answer.type_name) if answer else None,
            {**result.totals(), "reason": result.reason},
        )

    async def _open_conversation(self, task: str) -> None:
        variables = format_variables(await self.variables())
        template = {"code": self.system_prompt_template, "json": self.json_prompt_template,
                    "auto": self.auto_prompt_template}[self.action_format]
        system = render_system_prompt(
            template,
            self.hub.prompt_docs(self.all_tools),
            sorted(self.policy.effective_imports()),
            variables,
            PREIMPORTED if self.preimport else "",
        )
        if self.messages:
            self.messages[0] = {"role": "system", "content": system}
        else:
            self.messages = [{"role": "system", "content": system}]
        self.messages.append({"role": "user", "content": f"Task: {task}"})
        self._cycles = CycleTracker(opening=len(self.messages))

    async def _step(
        self, step: int, emit: Callable[[str, Any], None], stdin: StdinHandler | None,
        last_call: str = "",
    ) -> StepRecord:
        self.step_counter += 1
        emit("thinking", None)
        compact(self.messages, self._cycles.opening, self.max_prompt_tokens)
        specs = function_specs(self.all_tools) if self.action_format != "code" else None
        completion, resampled = await step_reply(
            self.llm, self.messages, specs, options=self, cycles=self._cycles,
            clock=self.clock, emit=emit, on_cut=lambda streamed, seconds: self._cut(
                StepRecord.cut_short(step, streamed, seconds, last_call)),
            calls_only=self.action_format == "json", last_call=bool(last_call))
        actions = parse_actions(completion.tool_calls, self.all_tools) if specs else []
        code = extract_code(completion.text) if self.action_format != "json" else None
        skipped_code = actions and code is not None
        if actions:
            code = None  # a reply that calls functions does not also run its code
            self.messages.append(assistant_message(completion.text, actions))
        else:
            self.messages.append({"role": "assistant", "content": completion.text})
        record = StepRecord.from_completion(step, completion, code)
        record.last_call = last_call
        record.resampled = resampled.record() if resampled else None
        assert self.trace is not None
        try:
            if actions:
                await json_step(self, record, actions, emit, stdin)
                if skipped_code:
                    self.messages.append({"role": "user", "content": CODE_NOT_RUN_MESSAGE})
            elif code is None:
                record.status = "no-code"
                self.messages.append({"role": "user", "content": (
                    NO_CALL_MESSAGE if self.action_format == "json" else NO_CODE_MESSAGE)})
            else:
                await self._act(record, code, emit, stdin)
                if not last_call:  # no step follows the last call to check an answer in
                    # Before the trace records the step, so that it records the hold too.
                    self._cycles.held_back(self, self.tool_server, record, self.messages)
        except BaseException as exc:
            # The kernel was lost mid-step, or the host failed: the step (its code, its
            # tool calls, the reason) is in the trace before the run ends.
            interrupted = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
            record.status = "interrupted" if interrupted else "error"
            record.reason = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.trace.add_step(record)
        emit("step_end", record)
        return record

    def _cut(self, record: StepRecord) -> None:
        assert self.trace is not None  # the trace shows what the time went on
        self.trace.add_step(record)

    async def _act(
        self, record: StepRecord, code: str, emit: Callable[[str, Any], None],
        stdin: StdinHandler | None,
    ) -> None:
        assert self.tool_server is not None
        if self.confirm_code:
            confirmed, denial = await self.hub.confirm_step(record.step, record.code or code,
                                                            stdin)
            if confirmed is None:
                record.deny_code(denial, self.hub.gate.end_step())
                emit("blocked", denial)
                self.messages.append({"role": "user", "content": f"Step {record.step}: your "
                                      f"code was NOT run, {denial}."})
                return
            record.code = code = confirmed  # as the human may have edited it
        verdict = check_with_repair(self.policy, record, code, kernel_names(self.all_tools),
                                    self.session.kernel_work_dir, self.repair_stubs)
        code = record.code or code  # as stub repair may have changed it
        if not verdict.allowed:
            record.status = "blocked"
            emit("blocked", verdict.message)
            self.messages.append({"role": "user", "content": f"Step {record.step}: your code "
                                  f"was NOT run. {verdict.message}"})
            self.messages = self._cycles.failed(self, record, code, verdict.message.splitlines()[0],
                                                self.messages)
            return
        emit("code", code)
        timeout = min(self.step_timeout, max(self.clock.left(), 0.5))
        assert self.trace is not None
        self.sub_agents.bound(timeout, self.max_steps,
                              self.trace.path.parent / f"{self.trace.path.stem}.subagents",
                              self._otel_context())
        self.hub.begin_step(record.step, code, human=stdin is not None)
        try:
            result, end = await execute_step(
                self.session, self.tool_server, record.step, code, timeout,
                on_output=lambda o: emit("output", o), stdin_handler=stdin,
            )
        finally:  # every call that ran is the step's, even when the step failed
            record.tool_calls = [tool_call_record(c) for c in self.tool_server.drain_calls()]
            record_refused(self.trace, self.tool_server)
            record.approvals += self.hub.gate.end_step()
        if result.timed_out or result.kernel_died:
            await self.sub_agents.cancel()
        self.sub_agents.link(record.tool_calls, self.trace.path.parent)
        record.record_execution(result, self.max_trace_output_bytes)
        record.flags = end.flags
        observation = model_view(result, self.step_counter, end.variables,
                                 self.max_output_chars, self.max_kept_output_chars)
        if observation.truncated:
            record.outputs_key = self.step_counter
            observation.text += await self._keep_full_output(observation.full_text)
        observation.text = self._cycles.annotate(self, record, result.ok, observation.text)
        if not result.ok:
            # Greedy small models resend failing code verbatim: the observation says so.
            earlier = self._cycles.repeated(code)
            observation.text += failure_note(earlier.step if earlier else None, result,
                                             [t.name for t in self.all_tools])
        record.observation_truncated = observation.truncated
        emit("observation", observation.text)
        self.messages.append(observation.message(self.vision))
        self.messages = self._cycles.after_step(self, record, result, code, self.messages)
        self.hub.check_servers()  # a server whose failure stops the run ends it here

    def _otel_context(self) -> dict[str, Any] | None:
        context = self._otel.context() if self._otel is not None else None
        return {**context, "endpoint": self.otel_endpoint} if context else None

    async def _keep_full_output(self, text: str) -> str:
        """Set ``_outputs[step]`` in the kernel; a note for the model when that failed."""
        kept = await keep_full_output(self.session, self.step_counter, text)
        if kept.ok:
            return ""
        why = kept.reason or (kept.error.text if kept.error else kept.status)
        return (f"\n[_outputs[{self.step_counter}] could not be kept ({why}): print smaller "
                "parts of the data instead]")

    async def variables(self) -> list[dict[str, str]]:
        """A summary of the variables alive in the kernel, without touching its history."""
        return (await variables_now(self.session)).variables

    async def apropose(self, task: str) -> str | None:
        """One model call for ``task``; return its code without running it (%%agent --code)."""
        await self.astart()
        await self._open_conversation(task)
        completion = await self.llm.complete(self.messages)
        self.messages.append({"role": "assistant", "content": completion.text})
        return extract_code(completion.text)

    async def areset(self) -> None:
        """Clear the kernel's variables (%reset -f) and the conversation."""
        await self.session.async_reset()
        self.messages = []

    # ---- sync API and context managers ------------------------------------------------

    start = run_sync(astart)
    close = run_sync(aclose)
    run = run_sync(arun)
    reset = run_sync(areset)

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Agent:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
