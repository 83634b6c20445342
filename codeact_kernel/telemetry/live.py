"""Live export: spans leave as the trace writer saves each step.

Attached to a :class:`~codeact_kernel.trace.notebook.TraceWriter` as an observer, so the
spans are built from exactly what the notebook records, and the notebook records the ids
of its spans. Telemetry never fails a run: an error here is logged once and export stops.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from .config import Telemetry
from .export import child_span_id, output_bytes
from .otlp import OtlpSink
from .spans import RunSpans, SpanOptions, StepInput, new_span_id

log = logging.getLogger(__name__)


class LiveExport:
    """One agent's live span export (a trace-writer observer)."""

    def __init__(self, endpoint: str, settings: Telemetry, *, agent_name: str, model: str,
                 parent: dict[str, Any] | None = None) -> None:
        self.sink = OtlpSink(endpoint, service_name=settings.service_name,
                             timeout=settings.export_timeout)
        self.options = SpanOptions(settings.max_attribute_chars, settings.redact)
        self.agent_name, self.model = agent_name, model
        self.parent = parent or {}
        self.run: RunSpans | None = None
        self.base = Path(".")
        self.broken = False

    def context(self) -> dict[str, Any] | None:
        """Where a sub-agent called in the current step puts its run: this trace."""
        if self.run is None:
            return None
        return {"trace_id": self.run.trace_id}

    def on_task(self, run: dict[str, Any], nb: NotebookNode, path: Path) -> None:
        self._guard(self._task, run, nb, path)

    def on_step(self, record: Any, meta: dict[str, Any]) -> None:
        self._guard(self._step, record, meta)

    def on_finish(self, run: dict[str, Any]) -> None:
        self._guard(self._finish, run)

    def close(self) -> None:
        self.sink.close()

    def _task(self, run: dict[str, Any], nb: NotebookNode, path: Path) -> None:
        self.base = path.parent
        view = {**run, "agent_name": self.agent_name, "model": self.model,
                "trace_path": str(path)}
        trace_id = int(self.parent["trace_id"], 16) if self.parent.get("trace_id") else None
        parent = int(self.parent["span_id"], 16) if self.parent.get("span_id") else None
        self.run = RunSpans(view, self.options, trace_id=trace_id, parent=parent)
        run["otel"] = self.run.ids()

    def _step(self, record: Any, meta: dict[str, Any]) -> None:
        if self.run is None:
            return
        for call in meta.get("tool_calls", []) or []:
            if call.get("trace") and not call.get("otel_span_id"):
                span = child_span_id(self.base, call)
                if span:
                    call["otel_span_id"] = span
        step_id = new_span_id()
        step = StepInput(meta, record.code, output_bytes(record.outputs),
                         float(meta.get("ended_at") or time.time()))
        self.sink.emit(self.run.step(step, step_id))
        meta["otel"] = {"span_id": f"{step_id:016x}"}

    def _finish(self, run: dict[str, Any]) -> None:
        if self.run is None:
            return
        self.run.run.update(run)
        self.sink.emit([self.run.finish(float(run.get("ended_at") or time.time()))])
        self.run = None

    def _guard(self, fn: Any, *args: Any) -> None:
        if self.broken:
            return
        try:
            fn(*args)
        except Exception:
            self.broken = True
            log.warning("OpenTelemetry: building spans failed; the run goes on without "
                        "export", exc_info=True)
