"""Under FastAPI's and httpx's own OpenTelemetry instrumentation: one trace, one SERVER span per hop."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry.trace import SpanKind

import ferrum_otel
from ferrum_otel.testing import capture

from .backends import free_port, wait_for

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")


def test_request_span_is_internal_under_fastapis_server_span():
    """A FastAPI handler using ferrum_otel.request(), called by an instrumented httpx client: the client span,
    FastAPI's SERVER span and ferrum's INTERNAL request span (with its phases) share one trace."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    app = fastapi.FastAPI()

    @app.get("/generate")
    def generate() -> dict:
        with ferrum_otel.request(model="m", input_tokens=2) as req:
            req.token()
            req.token()
        return {"ok": True}

    with capture() as cap:
        tp = cap.telemetry.tracer_provider
        FastAPIInstrumentor.instrument_app(app, tracer_provider=tp)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: server.started, "uvicorn to start", 30)
            with httpx.Client() as client:
                HTTPXClientInstrumentor.instrument_client(client, tracer_provider=tp)
                assert client.get(f"http://127.0.0.1:{port}/generate").json() == {"ok": True}
            time.sleep(0.2)
            spans = cap.spans()
        finally:
            server.should_exit = True
            thread.join(10)
            FastAPIInstrumentor.uninstrument_app(app)
    assert len({sp.context.trace_id for sp in spans}) == 1
    servers = [sp for sp in spans if sp.kind is SpanKind.SERVER]
    (server_span,) = servers  # exactly one SERVER span for the one process hop
    (client_span,) = [sp for sp in spans if sp.kind is SpanKind.CLIENT]
    assert server_span.parent.span_id == client_span.context.span_id
    (ours,) = cap.spans("text_completion m")
    assert ours.kind is SpanKind.INTERNAL and ours.parent.span_id == server_span.context.span_id
    assert [c.name for c in cap.children(ours)] == ["prefill", "decode"]
