"""Telemetry settings; importing this costs nothing (no opentelemetry)."""

from __future__ import annotations

import os

from traitlets import Callable, Float, Int, Unicode
from traitlets.config import Configurable


def env_configured() -> bool:
    """The standard OTEL_EXPORTER_OTLP_* variables turn export on, as in every OTel SDK."""
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


class Telemetry(Configurable):
    """How runs become spans. Where they go is ``Agent.otel_endpoint`` (or the environment)."""

    service_name = Unicode(
        "codeact_kernel", help="The OpenTelemetry service.name of exported spans."
    ).tag(config=True)
    max_attribute_chars = Int(
        4096,
        help="Longest text kept in one span attribute (code, tool arguments and results, the "
        "task); longer text keeps its head and tail, as in the model's view.",
    ).tag(config=True)
    export_timeout = Float(
        5.0,
        help="Seconds one OTLP export may take; at the end of a run, queued spans get at most "
        "this long to leave before the run returns regardless.",
    ).tag(config=True)
    redact = Callable(
        None, allow_none=True,
        help="redact(kind, value) -> value, applied to tool arguments ('tool.arguments'), "
        "tool results ('tool.result'), the step's code ('code') and the task ('task') before "
        "they enter a span.",
    )
