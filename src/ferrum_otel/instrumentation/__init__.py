"""Instrumentations of other libraries' inference loops (``transformers``), each an
OpenTelemetry instrumentor with an ``opentelemetry_instrumentor`` entry point."""
