"""A run as OpenTelemetry GenAI spans, built from what the trace notebook records.

One builder serves both paths: live export (fed by the trace writer as each step is
saved) and export of saved traces (fed by the notebook's cells). So a notebook and the
spans made from it always agree, and old runs can be loaded into any backend.

The tree of one run::

    invoke_agent {name}                  (gen_ai.operation.name = invoke_agent)
      step {n}
        chat {model}                     (gen_ai.usage.*, cost)
        execute_code                     (the code, status, duration, output size)
          execute_tool {tool}            (arguments, result summary)
            invoke_agent {sub-agent}     (a managed sub-agent's run nests here)

Nothing here imports opentelemetry: spans are plain data until an exporter
(:mod:`codeact_kernel.telemetry.otlp`) converts them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Redactor = Callable[[str, Any], Any]
"""``redact(kind, value)``: kind is "tool.arguments", "tool.result", "code" or "task"; returns
the value to keep in the span (for example with secrets replaced)."""

_SKIP_META = frozenset({"tool_calls", "policy", "outputs_key", "otel", "ended_at"})


def new_trace_id() -> int:
    return secrets.randbits(128) or 1


def new_span_id() -> int:
    return secrets.randbits(64) or 1


def derived_id(parent: int, *parts: object) -> int:
    """A child's span id, fixed by its parent's: the notebook records the run's and each
    step's ids, and an export of the saved trace rebuilds the same ids below them."""
    digest = hashlib.sha256(f"{parent:016x}/{'/'.join(map(str, parts))}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


@dataclass
class SpanData:
    """One finished span, as data. Times are seconds since the epoch."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    start: float
    end: float
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    kind: str = "internal"  # or "client": a call that leaves the process (the model)


def cap_text(text: str, limit: int) -> str:
    """Head and tail of ``text``, as the model's view cuts long output."""
    if len(text) <= limit:
        return text
    half = max(limit // 2 - 20, 1)
    return f"{text[:half]}\n... [{len(text) - 2 * half} characters cut] ...\n{text[-half:]}"


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


@dataclass
class SpanOptions:
    """How values are kept in spans."""

    max_attribute_chars: int = 4096
    redact: Redactor | None = None

    def text(self, value: Any, kind: str = "") -> str:
        if kind and self.redact is not None:
            value = self.redact(kind, value)
        return cap_text(_as_text(value), self.max_attribute_chars)


@dataclass
class StepInput:
    """What one step contributes: its trace metadata, and what lives in the cell itself."""

    meta: dict[str, Any]
    code: str | None
    output_bytes: int
    ended: float


class RunSpans:
    """The spans of one run. ``step`` returns a finished step's spans at once (live
    export sends them then); ``finish`` returns the run's own span.

    ``trace_id``/``span_id`` may be given to reuse recorded ids; ``parent`` places the
    run under another span (a sub-agent under its parent's tool call)."""

    def __init__(
        self,
        run: dict[str, Any],
        options: SpanOptions,
        *,
        trace_id: int | None = None,
        span_id: int | None = None,
        parent: int | None = None,
    ) -> None:
        self.run = run
        self.options = options
        self.trace_id = trace_id or new_trace_id()
        self.span_id = span_id or new_span_id()
        self.parent = parent
        self.start = float(run.get("started_at") or time.time())
        self._last_end = self.start
        self.usage = {"input": 0, "output": 0, "cost": 0.0}

    def ids(self) -> dict[str, str]:
        ids = {"trace_id": f"{self.trace_id:032x}", "span_id": f"{self.span_id:016x}"}
        if self.parent:
            ids["parent_span_id"] = f"{self.parent:016x}"
        return ids

    def step(self, step: StepInput, step_span_id: int | None = None) -> list[SpanData]:
        meta = step.meta
        start, end = self._last_end, max(step.ended, self._last_end)
        self._last_end = end
        step_id = step_span_id or new_span_id()
        status = str(meta.get("status", ""))
        attrs = {"codeact.step": int(meta.get("step", 0)), "codeact.step.status": status}
        attrs.update({f"codeact.step.{k}": v for k, v in meta.items()
                      if k not in _SKIP_META and k != "step" and _scalar(v)})
        error = _step_error(meta)
        spans = [SpanData(f"step {meta.get('step', '?')}", self.trace_id, step_id, self.span_id,
                          start, end, attrs, error)]
        llm_end = min(start + float(meta.get("llm_duration") or 0.0), end)
        spans.append(self._chat(meta, step_id, start, llm_end))
        if step.code is not None:
            spans.extend(self._execution(step, step_id, llm_end, end, error))
        else:  # a step of function calls (JSON actions): the tool calls are the step's
            spans.extend(self.tool(call, step_id, index)
                         for index, call in enumerate(meta.get("tool_calls", []) or []))
        return spans

    def _chat(self, meta: dict[str, Any], parent: int, start: float, end: float) -> SpanData:
        model = str(meta.get("model") or self.run.get("model") or "")
        tokens_in, tokens_out = int(meta.get("prompt_tokens") or 0), int(
            meta.get("completion_tokens") or 0)
        self.usage["input"] += tokens_in
        self.usage["output"] += tokens_out
        self.usage["cost"] += float(meta.get("cost") or 0.0)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
        }
        if meta.get("cost") is not None:
            attrs["codeact.cost_usd"] = float(meta["cost"])
        return SpanData(f"chat {model}".strip(), self.trace_id, derived_id(parent, "chat"),
                        parent, start, end, attrs, kind="client")

    def _execution(self, step: StepInput, parent: int, start: float, end: float,
                   error: str | None) -> list[SpanData]:
        meta = step.meta
        exec_start = max(start, end - float(meta.get("exec_duration") or 0.0))
        blocked = not meta.get("policy", {}).get("allowed", True)
        attrs: dict[str, Any] = {
            "codeact.code": self.options.text(step.code or "", "code"),
            "codeact.execution.status": str(meta.get("status", "")),
            "codeact.execution.duration_s": float(meta.get("exec_duration") or 0.0),
            "codeact.execution.output_bytes": step.output_bytes,
            "codeact.execution.truncated": bool(meta.get("observation_truncated")),
            "codeact.execution.blocked": blocked,
            "codeact.execution.timed_out": bool(meta.get("timed_out")),
        }
        if meta.get("recovery") and meta["recovery"] != "none":
            attrs["codeact.execution.recovery"] = str(meta["recovery"])
            attrs["codeact.execution.state_lost"] = bool(meta.get("state_lost"))
        exec_id = derived_id(parent, "execute")
        spans = [SpanData("execute_code", self.trace_id, exec_id, parent, exec_start, end,
                          attrs, error)]
        for index, call in enumerate(meta.get("tool_calls", []) or []):
            spans.append(self.tool(call, exec_id, index))
        return spans

    def tool(self, call: dict[str, Any], parent: int, index: int = 0) -> SpanData:
        """A host tool call; a sub-agent call keeps the span id its child recorded."""
        start = float(call.get("started") or 0.0)
        end = start + float(call.get("duration") or 0.0)
        name = str(call.get("name", ""))
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.arguments": self.options.text(call.get("arguments"),
                                                            "tool.arguments"),
        }
        if call.get("result") is not None:
            attrs["gen_ai.tool.call.result"] = self.options.text(call["result"], "tool.result")
        error = call.get("error")
        if error:
            attrs["error.type"] = str(error).split(":", 1)[0][:100]
        span_id = _hex_id(call.get("otel_span_id")) or derived_id(parent, "tool", index)
        if call.get("sub_agent"):
            attrs["codeact.sub_agent.trace"] = str(call.get("trace", ""))
        return SpanData(f"execute_tool {name}", self.trace_id, span_id, parent, start, end,
                        attrs, str(error) if error else None)

    def finish(self, ended: float | None = None) -> SpanData:
        run = self.run
        status = str(run.get("status", ""))
        totals = run.get("totals") or {}
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": str(run.get("agent_name") or "codeact"),
            "gen_ai.request.model": str(run.get("model") or ""),
            "gen_ai.usage.input_tokens": int(totals.get("prompt_tokens", self.usage["input"])),
            "gen_ai.usage.output_tokens": int(
                totals.get("completion_tokens", self.usage["output"])),
            "codeact.cost_usd": float(totals.get("cost", self.usage["cost"]) or 0.0),
            "codeact.task": self.options.text(run.get("task", ""), "task"),
            "codeact.status": status,
            "codeact.steps": int(totals.get("steps", 0)),
        }
        if run.get("trace_path"):
            attrs["codeact.trace_path"] = str(run["trace_path"])
        error = None if status in ("answered", "running") else (
            f"{status}: {run.get('reason') or totals.get('reason') or ''}".rstrip(": "))
        end = max(float(ended or run.get("ended_at") or self._last_end), self._last_end)
        name = f"invoke_agent {attrs['gen_ai.agent.name']}"
        return SpanData(name, self.trace_id, self.span_id, self.parent, self.start, end, attrs,
                        error)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _step_error(meta: dict[str, Any]) -> str | None:
    status = "timeout" if meta.get("timed_out") else str(meta.get("status", ""))
    if status in ("error", "timeout", "died", "aborted", "blocked"):
        reason = meta.get("reason") or ""
        return f"{status}: {reason}".rstrip(": ")
    return None


def _hex_id(value: Any) -> int | None:
    try:
        return int(str(value), 16) if value else None
    except ValueError:
        return None
