"""Observability: every run as OpenTelemetry GenAI spans (``spans``), exported live while it
runs (``live``) or from saved trace notebooks (``export``), over OTLP (``otlp``).

Off by default; when off, nothing here imports opentelemetry.
"""
