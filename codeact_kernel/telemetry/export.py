"""Spans from saved trace notebooks (``codeact export --otlp``), sub-agent trees included.

Ids a live export recorded in the notebook are reused, so the spans of a run found in a
backend and its notebook name each other. Old traces without ids or step end times get
fresh ids, and times rebuilt from the recorded durations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from ..errors import CodeActError
from ..trace.notebook import load_trace
from .spans import RunSpans, SpanData, SpanOptions, StepInput, _hex_id, new_span_id

MAX_DEPTH = 8  # sub-agents of sub-agents: a bound against a trace that links to itself


def output_bytes(outputs: list[Any]) -> int:
    """The size of a step's outputs as Jupyter saves them, without copying them."""
    total = 0
    for out in outputs or []:
        text = out.get("text")
        if isinstance(text, str):
            total += len(text)
        for value in (out.get("data") or {}).values():
            total += len(value) if isinstance(value, str) else len(json.dumps(value))
        total += sum(len(line) for line in out.get("traceback") or [])
    return total


def child_span_id(base: Path, call: dict[str, Any]) -> str | None:
    """The tool span id a sub-agent's run recorded as its parent, if it did."""
    meta = _child_meta(base, call)
    runs = (meta or {}).get("runs") or [{}]
    return (runs[-1].get("otel") or {}).get("parent_span_id")


def _child_meta(base: Path, call: dict[str, Any]) -> dict[str, Any] | None:
    path = Path(str(call.get("trace", "")))
    path = path if path.is_absolute() else base / path
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh).get("metadata", {}).get("codeact")
    except (OSError, ValueError, AttributeError):
        return None
    return meta if isinstance(meta, dict) else None


def spans_from_trace(path: str | Path, options: SpanOptions | None = None, *,
                     trace_id: int | None = None, parent: int | None = None,
                     depth: int = 0) -> list[SpanData]:
    """Every run in the notebook at ``path`` as spans; sub-agents nest under their calls."""
    path = Path(path)
    nb = load_trace(path)
    options = options or SpanOptions()
    meta = nb.metadata["codeact"]
    spans: list[SpanData] = []
    runs = meta.get("runs") or [{"task": meta.get("task"), "first_cell": 1, **meta}]
    for index, run in enumerate(runs):
        last = runs[index + 1]["first_cell"] if index + 1 < len(runs) else len(nb.cells)
        spans.extend(_run_spans(nb, path, run, int(run.get("first_cell", 1)), last, options,
                                trace_id, parent, depth))
    return spans


def _run_spans(nb: NotebookNode, path: Path, run: dict[str, Any], first: int, last: int,
               options: SpanOptions, trace_id: int | None, parent: int | None,
               depth: int) -> list[SpanData]:
    meta = nb.metadata["codeact"]
    recorded = run.get("otel") or {}
    view = {**run, "agent_name": (meta.get("agent") or {}).get("name") or "codeact",
            "model": meta.get("model", ""), "trace_path": str(path)}
    steps = _steps(nb.cells[first:last])
    if not view.get("started_at"):
        view["started_at"] = _rebuilt_start(steps)
    builder = RunSpans(view, options,
                       trace_id=trace_id or _hex_id(recorded.get("trace_id")),
                       span_id=_hex_id(recorded.get("span_id")),
                       parent=parent or _hex_id(recorded.get("parent_span_id")))
    spans: list[SpanData] = []
    clock = builder.start
    for step_meta, code, size in steps:
        clock = float(step_meta.get("ended_at") or clock + _duration(step_meta))
        step_span = _hex_id((step_meta.get("otel") or {}).get("span_id")) or new_span_id()
        built = builder.step(StepInput(step_meta, code, size, clock), step_span)
        spans.extend(built)
        if depth < MAX_DEPTH:
            spans.extend(_children(path.parent, built, step_meta, options, builder.trace_id,
                                   depth))
    spans.append(builder.finish(run.get("ended_at") or clock))
    return spans


def _children(base: Path, built: list[SpanData], step_meta: dict[str, Any],
              options: SpanOptions, trace_id: int, depth: int) -> list[SpanData]:
    tool_spans = [s for s in built if s.name.startswith("execute_tool ")]
    spans: list[SpanData] = []
    for call, tool_span in zip(step_meta.get("tool_calls") or [], tool_spans, strict=False):
        if not call.get("trace"):
            continue
        child = Path(str(call["trace"]))
        child = child if child.is_absolute() else base / child
        try:
            spans.extend(spans_from_trace(child, options, trace_id=trace_id,
                                          parent=tool_span.span_id, depth=depth + 1))
        except Exception:  # a missing or broken child trace leaves the parent's spans whole
            continue
    return spans


def _steps(cells: list[Any]) -> list[tuple[dict[str, Any], str | None, int]]:
    steps = []
    for cell in cells:
        meta = cell.get("metadata", {}).get("codeact") or {}
        if "llm_duration" not in meta or "status" not in meta:
            continue
        code = cell.get("source") if cell.get("cell_type") in ("code", "raw") else None
        steps.append((dict(meta), code, output_bytes(cell.get("outputs") or [])))
    return steps


def _duration(meta: dict[str, Any]) -> float:
    return float(meta.get("llm_duration") or 0.0) + float(meta.get("exec_duration") or 0.0)


def _rebuilt_start(steps: list[tuple[dict[str, Any], str | None, int]]) -> float:
    starts = [float(c.get("started") or 0) for m, _, _ in steps for c in m.get("tool_calls") or []
              if c.get("started")]
    if starts:
        return min(starts) - sum(_duration(m) for m, _, _ in steps[:1])
    import time

    return time.time() - sum(_duration(m) for m, _, _ in steps)


def export_spans(trace: str | Path, *, endpoint: str | None = None,
                 file: str | Path | None = None) -> str:
    """``codeact export --otlp/--otlp-file``: what was sent or written, in one line."""
    try:
        from .otlp import send_now, write_json
    except ImportError as exc:
        raise CodeActError(
            "OpenTelemetry export needs its packages: pip install 'codeact-kernel[otel]'"
        ) from exc
    spans = spans_from_trace(trace)
    done = []
    if file:
        write_json(spans, file)
        done.append(f"wrote {len(spans)} spans to {file}")
    if endpoint:
        if not send_now(spans, endpoint):
            raise CodeActError(f"the OTLP endpoint {endpoint} did not accept the spans; check "
                               "the URL (e.g. http://127.0.0.1:4318) and that it is running")
        done.append(f"sent {len(spans)} spans to {endpoint}")
    return "; ".join(done)
