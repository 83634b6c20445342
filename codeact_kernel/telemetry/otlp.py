"""OTLP export of :class:`~codeact_kernel.telemetry.spans.SpanData`: over HTTP/protobuf to a
collector, or as OTLP JSON to a file.

The only module that imports opentelemetry, and only when export is configured. Export
runs on the SDK's batch thread, so a slow or dead endpoint never blocks a run; its errors
are logged once per sink, not once per batch.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ..version import __version__
from .spans import SpanData

log = logging.getLogger(__name__)
SCOPE = InstrumentationScope("codeact_kernel", __version__)
# The SDK's exporter logs every failed batch; we say it once, with the endpoint.
logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter").setLevel(
    logging.CRITICAL)


def traces_url(endpoint: str) -> str:
    """A base URL (as OTEL_EXPORTER_OTLP_ENDPOINT) gets the traces path appended."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def to_readable(span: SpanData, resource: Resource) -> ReadableSpan:
    flags = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(span.trace_id, span.span_id, is_remote=False, trace_flags=flags)
    parent = (SpanContext(span.trace_id, span.parent_id, is_remote=False, trace_flags=flags)
              if span.parent_id else None)
    status = Status(StatusCode.ERROR, span.error) if span.error else Status(StatusCode.OK)
    return ReadableSpan(
        span.name, context=context, parent=parent, resource=resource,
        attributes=span.attributes, kind=SpanKind.CLIENT if span.kind == "client"
        else SpanKind.INTERNAL, status=status, start_time=int(span.start * 1e9),
        end_time=int(span.end * 1e9), instrumentation_scope=SCOPE,
    )


class _OnceLogging(SpanExporter):
    """Wraps an exporter: failures are logged once, naming the endpoint."""

    def __init__(self, inner: SpanExporter, where: str) -> None:
        self.inner, self.where, self.failed = inner, where, False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter bug must not kill the batch thread
            result = SpanExportResult.FAILURE
            reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = "the collector did not accept the spans"
        if result is SpanExportResult.FAILURE and not self.failed:
            self.failed = True
            log.warning("OpenTelemetry export to %s failed (%s); the run goes on, and this "
                        "is said once", self.where, reason)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class OtlpSink:
    """Sends spans to an OTLP/HTTP endpoint (or the OTEL_EXPORTER_OTLP_* environment)."""

    def __init__(self, endpoint: str = "", *, service_name: str = "codeact_kernel",
                 timeout: float = 5.0) -> None:
        self.resource = Resource.create({"service.name": service_name})
        url = traces_url(endpoint) if endpoint else None
        exporter = OTLPSpanExporter(endpoint=url, timeout=timeout)
        where = url or "the OTEL_EXPORTER_OTLP_* endpoint"
        self.processor = BatchSpanProcessor(_OnceLogging(exporter, where),
                                            schedule_delay_millis=200)
        self.timeout = timeout
        # Spans are converted off the agent's thread too: a step only appends to a queue.
        self._queue: queue.SimpleQueue[Sequence[SpanData] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._convert, daemon=True,
                                        name="codeact-otel-convert")
        self._worker.start()

    def emit(self, spans: Sequence[SpanData]) -> None:
        self._queue.put(spans)

    def _convert(self) -> None:
        while (spans := self._queue.get()) is not None:
            for span in spans:
                self.processor.on_end(to_readable(span, self.resource))
        self.processor.shutdown()

    def close(self, wait: float | None = None) -> None:
        """Flush what is queued, waiting at most ``wait`` seconds (never forever)."""
        self._queue.put(None)
        self._worker.join(self.timeout + 1.0 if wait is None else wait)


def write_json(spans: Sequence[SpanData], path: str | Path,
               service_name: str = "codeact_kernel") -> None:
    """The spans as one OTLP/JSON ExportTraceServiceRequest (what collectors accept)."""
    from google.protobuf.json_format import MessageToJson

    resource = Resource.create({"service.name": service_name})
    request = encode_spans([to_readable(s, resource) for s in spans])
    Path(path).write_text(MessageToJson(request), encoding="utf-8")


def send_now(spans: Sequence[SpanData], endpoint: str, service_name: str = "codeact_kernel",
             timeout: float = 10.0) -> bool:
    """Export spans synchronously (``codeact export --otlp``); True when accepted."""
    resource = Resource.create({"service.name": service_name})
    exporter = OTLPSpanExporter(endpoint=traces_url(endpoint) if endpoint else None,
                                timeout=timeout)
    try:
        result: Any = exporter.export([to_readable(s, resource) for s in spans])
    finally:
        exporter.shutdown()
    return bool(result is SpanExportResult.SUCCESS)
