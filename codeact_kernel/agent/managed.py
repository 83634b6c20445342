"""Managed agents: a sub-agent is a host tool that runs another Agent in its own sandbox.

In the orchestrator's kernel a managed agent is a callable ``name(task, **context)``.
Each call spawns a fresh agent (its own kernel, model and tools, never shared),
runs it on the tool server's worker thread with its own event loop, and returns
its final answer through the same safe serialization as any tool. Its run is
traced as a notebook of its own, linked from the orchestrator's cell.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import CodeActError
from ..kernels.session import KernelSession
from ..tools.stubs import rpc_call, stub_source
from ..tools.tool import Tool
from .handoff import push_variables
from .results import RunResult


class RunnableAgent(Protocol):
    """What this module needs of an agent: of the template a managed agent is made from,
    of each child spawned from it, and of the parent. The loop's Agent is one; a protocol
    rather than an import, because the loop imports this module."""

    name: str
    description: str
    max_steps: int
    trace_path: str
    otel_endpoint: str
    otel_parent: dict[str, Any] | None
    tools: list[Tool]
    sub_agents: SubAgents
    session: KernelSession
    parent: Any
    config: Any
    pool: Any

    def __init__(self, **kwargs: Any) -> None: ...

    @property
    def managed_tools(self) -> list[ManagedAgentTool]: ...

    def trait_names(self, **metadata: Any) -> list[str]: ...

    async def astart(self) -> Any: ...

    async def arun(self, task: str, *, deadline: float | None = None) -> RunResult: ...

    async def aclose(self) -> None: ...


class SubAgentError(CodeActError):
    """A managed agent ended without an answer; the message carries its reason."""


@dataclass
class ChildRun:
    """One finished run of a managed agent, for linking from the parent's trace."""

    name: str
    task: str
    trace_path: Path
    status: str
    steps: int
    claimed: bool = False


class ManagedAgentTool(Tool):
    """The host side of ``name(task, **context)`` in the orchestrator's kernel."""

    def __init__(self, template: RunnableAgent) -> None:
        if not template.name.isidentifier():
            raise CodeActError(
                f"a managed agent needs a name that is a Python identifier, got "
                f"{template.name!r}: Agent(name='researcher', description='...')"
            )
        if not template.description.strip():
            raise CodeActError(
                f"managed agent {template.name!r} needs a description: it is what the "
                "orchestrating model reads to decide when to call it"
            )
        self.template = template
        # The host function needs this tool, which needs the function: a holder ties them.
        holder: list[ManagedAgentTool] = []
        super().__init__(_entry_point(template, holder), name=template.name)
        holder.append(self)
        self.runs: list[ChildRun] = []
        self.trace_dir = Path("traces")
        self.deadline: float | None = None
        self.max_steps: int | None = None
        self.otel: dict[str, Any] | None = None
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._active: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = {}

    def header(self, *, quote: bool = False) -> str:
        ret = "'Any'" if quote else "Any"
        task = "'str'" if quote else "str"
        return f"{self.name}(task: {task}, **context) -> {ret}"

    def render_stub(self) -> str:
        # **context is folded into one JSON object, the host function's `context`.
        return stub_source(self.header(quote=True), self.doc,
                           rpc_call(self.name, [], ["task", "context"]))

    # ---- running a child --------------------------------------------------------------

    def run_child(self, task: str, context: dict[str, Any] | None) -> Any:
        """Runs on a tool-server worker thread: a fresh agent on a fresh event loop."""
        child = spawn(self.template)
        number = next(self._counter)
        child.trace_path = str(self.trace_dir / f"{self.name}-{number}.ipynb")
        if self.max_steps is not None:
            child.max_steps = min(child.max_steps, self.max_steps)
        if self.otel is not None:
            # The child's run nests under this call's tool span, whose id it records: the
            # parent's trace writer finds it there when the step ends.
            child.otel_endpoint = self.otel["endpoint"]
            child.otel_parent = {"trace_id": f"{self.otel['trace_id']:032x}",
                                 "span_id": f"{secrets.randbits(64) or 1:016x}"}
        result = asyncio.run(self._run(child, task, context or {}))
        with self._lock:
            self.runs.append(ChildRun(self.name, task, Path(result.trace_path), result.status,
                                      len(result.steps)))
        if not result.ok:
            raise SubAgentError(
                f"sub-agent {self.name} ended without an answer ({result.status}): "
                f"{result.reason or 'no reason given'}"
            )
        return result.answer

    async def _run(self, child: RunnableAgent, task: str, context: dict[str, Any]) -> Any:
        current = asyncio.current_task()
        assert current is not None
        key = id(current)
        with self._lock:
            self._active[key] = (asyncio.get_running_loop(), current)
        try:
            await child.astart()
            if context:
                await push_variables(child.session, context)
                task += "\nContext variables already defined in your kernel: " + ", ".join(
                    sorted(context))
            return await child.arun(task, deadline=self.deadline)
        finally:
            with self._lock:
                self._active.pop(key, None)
            await asyncio.shield(child.aclose())

    @property
    def active(self) -> bool:
        with self._lock:
            return bool(self._active)

    def cancel_all(self, wait: float = 10.0) -> None:
        """Stop every running child (its kernel is shut down, its trace saved)."""
        with self._lock:
            active = list(self._active.values())
        for loop, task in active:
            loop.call_soon_threadsafe(task.cancel)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            with self._lock:
                if not self._active:
                    return
            time.sleep(0.05)

    def claim_run(self, task: str) -> ChildRun | None:
        """The first unlinked finished run for ``task`` (to link it from a tool call)."""
        with self._lock:
            for run in self.runs:
                if not run.claimed and run.task.split("\nContext variables")[0] == task:
                    run.claimed = True
                    return run
        return None


def _entry_point(template: RunnableAgent, holder: list[ManagedAgentTool]) -> Any:
    def entry(task: str, context: dict[str, Any] | None = None) -> Any:
        return holder[0].run_child(task, context)

    entry.__name__ = template.name
    entry.__doc__ = (
        f"{template.description.strip()}\n\n"
        "A sub-agent with its own sandbox and tools; returns its final answer and raises "
        "ToolCallError with its reason when it fails.\n\n"
        "Args:\n"
        "    task: What the sub-agent should do, in plain words.\n"
        "    **context: Values (JSON, DataFrames) given to it as variables of its kernel."
    )
    return entry


class SubAgents:
    """The sub-agents an agent owns: their tools, the bounds each step gives them, their
    cancellation, and the links from the parent's trace to their runs."""

    def __init__(self, parent: RunnableAgent, templates: Sequence[RunnableAgent] = (),
                 specs: Sequence[dict[str, Any]] = ()) -> None:
        children = [*templates, *(from_config(spec, parent) for spec in specs)]
        self.tools = [ManagedAgentTool(child) for child in children]

    def bound(self, timeout: float, max_steps: int, trace_dir: Path,
              otel: dict[str, Any] | None = None) -> None:
        """A child may use at most what is left of the parent's step, and no more steps; its
        spans join the parent's trace (``otel``: the parent's trace id and endpoint)."""
        for managed in self.tools:
            managed.otel = otel
            managed.deadline = time.monotonic() + timeout
            managed.max_steps = max_steps
            managed.trace_dir = trace_dir

    async def cancel(self) -> None:
        """Stop every running child (their kernels shut, traces saved)."""
        if not any(managed.active for managed in self.tools):
            return  # also keeps interpreter-exit cleanup off the (closed) default executor

        def cancel() -> None:
            for managed in self.tools:
                managed.cancel_all()

        await asyncio.to_thread(cancel)

    def link(self, records: list[dict[str, Any]], base: Path) -> None:
        """Point each sub-agent call in a step's tool calls at the child's trace."""
        by_name = {t.name: t for t in self.tools}
        for record in records:
            tool = by_name.get(record.get("name", ""))
            if tool is None:
                continue
            run = tool.claim_run(str(record.get("arguments", {}).get("task", "")))
            if run is None:
                continue
            try:
                record["trace"] = str(run.trace_path.resolve().relative_to(base.resolve()))
            except ValueError:
                record["trace"] = str(run.trace_path.resolve())
            record["sub_agent"] = {"name": run.name, "status": run.status, "steps": run.steps}


def _config_values(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.trait_names(config=True)}


def spawn(template: RunnableAgent) -> RunnableAgent:
    """A fresh, unstarted agent configured like ``template`` (model, tools, limits)."""
    values = _config_values(template)
    # Its sub-agents are copied below; building them again from config would nest forever.
    values["managed_agents_config"] = []
    child = type(template)(tools=template.tools, parent=template.parent,
                           config=template.config, pool=template.pool, **values)
    for part in ("llm", "policy", "session"):
        for name, value in _config_values(getattr(template, part)).items():
            setattr(getattr(child, part), name, value)
    child.session.manager = template.session.manager.clone(parent=child.session)
    child.sub_agents.tools = [ManagedAgentTool(t.template) for t in template.managed_tools]
    return child


def from_config(spec: dict[str, Any], parent: RunnableAgent) -> RunnableAgent:
    """An agent of ``parent``'s class from a config entry: name, description, model,
    api_base, api_key_env, tools (["pkg.module:function", ...]) and max_steps."""
    unknown = set(spec) - {"name", "description", "model", "api_base", "api_key_env", "tools",
                           "max_steps", "step_timeout"}
    if unknown or "name" not in spec:
        raise CodeActError(
            f"managed agent entry {spec!r}: needs 'name' and 'description'; allowed keys are "
            "name, description, model, api_base, api_key_env, tools, max_steps, step_timeout"
        )
    tools = [Tool.from_path(path) for path in spec.get("tools", [])]
    agent = type(parent)(model=spec.get("model"), tools=tools, api_base=spec.get("api_base"),
                         api_key_env=spec.get("api_key_env"), parent=parent, name=spec["name"],
                         description=spec.get("description", ""), managed_agents_config=[])
    for key in ("max_steps", "step_timeout"):
        if key in spec:
            setattr(agent, key, spec[key])
    return agent
