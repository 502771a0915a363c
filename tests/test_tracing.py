"""Request tracing with in-memory exporters: span trees, attributes, metrics, for every way in."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import ferrum_otel
from ferrum_otel import semconv as s
from ferrum_otel.schema import RequestId, RequestMetrics
from ferrum_otel.testing import InvalidArgument, capture

MODEL = "llama-3-8b"
NAME = f"text_completion {MODEL}"


def _tree(cap, root_name=NAME):
    (root,) = cap.spans(root_name)
    return root, cap.children(root)


def _assert_nested(root, children):
    """Children lie inside the parent, in order, without overlapping."""
    last_end = root.start_time
    for child in children:
        assert child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time
        assert child.start_time >= last_end
        last_end = child.end_time


def _stream(req, n=4, gap=0.0005):
    for _ in range(n):
        time.sleep(gap)
        req.token()


def test_context_manager_span_tree_and_attributes(cap):
    """with request(): an INTERNAL root span (no remote caller) with queue, prefill and decode children."""
    with ferrum_otel.request(
        model=MODEL, input_tokens=12, max_tokens=64, temperature=0.7, top_p=0.9, stream=True, client_id="tenant-a"
    ) as req:
        with req.phase("queue"):
            time.sleep(0.002)
        _stream(req, 5)
    root, children = _tree(cap)
    assert root.kind is SpanKind.INTERNAL and root.parent is None
    assert [c.name for c in children] == ["queue", "prefill", "decode"]
    _assert_nested(root, children)
    a = root.attributes
    m = req.metrics
    assert isinstance(m, RequestMetrics)
    assert a[s.GEN_AI_OPERATION_NAME] == "text_completion" and a[s.GEN_AI_PROVIDER_NAME] == "ferrum"
    assert a[s.GEN_AI_REQUEST_MODEL] == MODEL
    assert a[s.GEN_AI_REQUEST_MAX_TOKENS] == 64 and a[s.GEN_AI_REQUEST_STREAM] is True
    assert a[s.GEN_AI_REQUEST_TEMPERATURE] == 0.7 and a[s.GEN_AI_REQUEST_TOP_P] == 0.9
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 12 and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 5
    assert a[s.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[s.FERRUM_REQUEST_ID] == str(m.request_id) and a[s.FERRUM_CLIENT_ID] == "tenant-a"
    # Every RequestMetrics field is on the span.
    assert a[s.FERRUM_CREATED_AT] == m.created_at.isoformat() and a[s.FERRUM_COMPLETED_AT] == m.completed_at.isoformat()
    for attr, value in [
        (s.FERRUM_TOTAL_TIME_MS, m.total_time_ms),
        (s.FERRUM_QUEUE_TIME_MS, m.queue_time_ms),
        (s.FERRUM_PREFILL_TIME_MS, m.prefill_time_ms),
        (s.FERRUM_DECODE_TIME_MS, m.decode_time_ms),
        (s.FERRUM_WAS_PREEMPTED, False),
        (s.FERRUM_PREEMPTION_COUNT, 0),
    ]:
        assert a[attr] == value
    assert m.queue_time_ms >= 2 and m.output_tokens == 5 and m.input_tokens == 12
    # The schema object and the span agree on times.
    assert root.start_time == m.created_at.unix_nanos and root.end_time == m.completed_at.unix_nanos
    assert m.total_time_ms == round((root.end_time - root.start_time) / 1e6)
    # TTFT and ITL statistics.
    assert a[s.FERRUM_TTFT_MS] > a[s.FERRUM_QUEUE_TIME_MS] - 1
    assert 0 < a[s.FERRUM_ITL_P50_MS] <= a[s.FERRUM_ITL_P90_MS] <= a[s.FERRUM_ITL_P99_MS] <= a[s.FERRUM_ITL_MAX_MS]
    # The first token comes out of prefill; decode made the other four.
    assert req.phases["decode"].tokens_processed == 4 and req.phases["prefill"].tokens_processed == 12
    assert [e.name for e in root.events] == [s.EVENT_FIRST_TOKEN]


def test_metrics_recorded_once_with_spec_buckets(cap):
    """The GenAI histograms get one point each, with the spec's bucket boundaries and units."""
    with ferrum_otel.request(model=MODEL, input_tokens=3) as req:
        _stream(req, 3)
    metrics = cap.metrics()
    want = {
        "gen_ai.server.request.duration": s.SERVER_REQUEST_DURATION,
        "gen_ai.server.time_to_first_token": s.SERVER_TIME_TO_FIRST_TOKEN,
        "gen_ai.server.time_per_output_token": s.SERVER_TIME_PER_OUTPUT_TOKEN,
        "ferrum.request.inter_token_latency": s.INTER_TOKEN_LATENCY,
    }
    for name, spec in want.items():
        (point,) = metrics[name].data.data_points
        assert point.count == 1 and metrics[name].unit == spec.unit
        assert tuple(point.explicit_bounds) == spec.buckets
        assert set(point.attributes) == {s.GEN_AI_OPERATION_NAME, s.GEN_AI_PROVIDER_NAME, s.GEN_AI_REQUEST_MODEL}
    usage = {p.attributes[s.GEN_AI_TOKEN_TYPE]: p.sum for p in cap.points("gen_ai.client.token.usage")}
    assert usage == {"input": 3, "output": 3}
    assert cap.counter("ferrum.engine.requests_total") == 1 and cap.counter("ferrum.engine.requests_completed") == 1
    assert (
        cap.counter("ferrum.engine.decode_tokens_total") == 3 and cap.counter("ferrum.engine.prefill_tokens_total") == 3
    )
    assert cap.counter("ferrum.engine.active_requests") == 0
    ttft = cap.histogram("gen_ai.server.time_to_first_token")
    assert ttft.sum == pytest.approx(req.span.attributes[s.FERRUM_TTFT_MS] / 1e3)
    tpot = cap.histogram("gen_ai.server.time_per_output_token")
    duration = cap.histogram("gen_ai.server.request.duration").sum
    assert tpot.sum == pytest.approx((duration - ttft.sum) / 2, rel=1e-9)


def test_metric_attributes_stay_low_cardinality(cap):
    """Metric points never carry request or client ids."""
    for i in range(3):
        with ferrum_otel.request(model=MODEL, request_id=f"req-{i}", client_id=f"c{i}") as req:
            req.token()
    for metric in cap.metrics().values():
        for point in metric.data.data_points:
            assert not any(k.startswith("ferrum.") for k in point.attributes)
    assert len(cap.points("gen_ai.server.request.duration")) == 1


def test_exception_marks_error_and_propagates_unchanged(cap):
    """An exception: status ERROR, error.type, the exception recorded, and the same object re-raised."""
    boom = RuntimeError("CUDA out of memory")
    with pytest.raises(RuntimeError) as err, ferrum_otel.request(model=MODEL) as req:
        req.token()
        raise boom
    assert err.value is boom
    root, _ = _tree(cap)
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes[s.ERROR_TYPE] == "RuntimeError"
    assert any(e.name == "exception" for e in root.events)
    assert cap.counter("ferrum.engine.requests_failed", error__type="RuntimeError") == 1
    assert cap.histogram("gen_ai.server.request.duration", error__type="RuntimeError").count == 1
    assert cap.points("gen_ai.server.time_to_first_token") == []  # only successful responses


def test_cancellation_counts_as_cancelled_not_failed(cap):
    """asyncio.CancelledError ends the request as cancelled: no ERROR status, no failure count."""

    async def main():
        async def serve():
            async with ferrum_otel.request(model=MODEL) as req:
                req.token()
                await asyncio.sleep(10)

        task = asyncio.create_task(serve())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    root, _ = _tree(cap)
    assert root.status.status_code is StatusCode.UNSET
    assert root.attributes[s.FERRUM_CANCELLED] is True
    assert root.attributes[s.GEN_AI_RESPONSE_FINISH_REASONS] == ("cancelled",)
    assert cap.counter("ferrum.engine.requests_cancelled") == 1
    assert cap.counter("ferrum.engine.requests_failed") == 0


def test_preemption(cap):
    """Preemptions: count, flag, one event each, the counter, and the re-queue as a second queue span."""
    with ferrum_otel.request(model=MODEL, input_tokens=4) as req:
        req.mark_phase("queue")
        time.sleep(0.001)
        req.mark_phase("prefill")
        time.sleep(0.001)
        req.mark_phase("decode")
        req.token()
        req.preempted()
        req.mark_phase("queue")
        time.sleep(0.001)
        req.mark_phase("prefill")
        time.sleep(0.001)
        req.mark_phase("decode")
        _stream(req, 2)
    root, children = _tree(cap)
    assert [c.name for c in children] == ["queue", "prefill", "decode", "queue", "prefill", "decode"]
    _assert_nested(root, children)
    assert req.metrics.was_preempted and req.metrics.preemption_count == 1
    assert [e.name for e in root.events].count(s.EVENT_PREEMPTED) == 1
    assert cap.counter("ferrum.engine.preemptions_total") == 1
    assert req.phases["queue"].operations == 2


def test_manual_finish_and_reason(cap):
    """Without `with`, finish(reason) ends the request; a second finish changes nothing."""
    req = ferrum_otel.request(model=MODEL)
    req.token(3)
    m = req.finish("length")
    assert m is req.metrics and m.output_tokens == 3
    assert req.finish("stop") is m
    root, _ = _tree(cap)
    assert root.attributes[s.GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)


def test_request_ids(cap):
    """A UUID request id is the schema's id; any other id is kept as an attribute beside a new UUID."""
    uuid_text = "3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d"
    with ferrum_otel.request(model=MODEL, request_id=uuid_text) as a:
        pass
    with ferrum_otel.request(model=MODEL, request_id="chatcmpl-42") as b:
        pass
    assert str(a.metrics.request_id) == uuid_text and a.external_id is None
    assert isinstance(b.metrics.request_id, RequestId) and b.external_id == "chatcmpl-42"
    (span_b,) = [sp for sp in cap.spans(NAME) if sp.attributes.get(s.FERRUM_REQUEST_EXTERNAL_ID)]
    assert span_b.attributes[s.FERRUM_REQUEST_EXTERNAL_ID] == "chatcmpl-42"


def test_traceparent_joins_the_callers_trace(cap):
    """A traceparent string or header dict makes the request span a child of the remote span."""
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    tp = f"00-{trace_id}-{span_id}-01"
    with ferrum_otel.request(model=MODEL, context=tp):
        pass
    with ferrum_otel.request(model=MODEL, context={"traceparent": tp}):
        pass
    for root in cap.spans(NAME):
        assert format(root.context.trace_id, "032x") == trace_id
        assert format(root.parent.span_id, "016x") == span_id and root.parent.is_remote


def test_user_spans_nest_and_current_request(cap):
    """Spans the user opens inside a request nest under it; current_request() finds the tracker."""
    tracer = cap.telemetry.tracer_provider.get_tracer("app")
    assert ferrum_otel.current_request() is None
    with ferrum_otel.request(model=MODEL) as req:
        assert ferrum_otel.current_request() is req
        with tracer.start_as_current_span("tokenize"):
            assert ferrum_otel.current_request() is req
    assert ferrum_otel.current_request() is None
    (tok,) = cap.spans("tokenize")
    assert tok.parent.span_id == req.span.context.span_id


def test_bad_arguments_are_clear_errors_in_strict_mode(cap):
    """In strict mode (capture's default) misuse of the API raises, saying what was wrong."""
    with pytest.raises(
        InvalidArgument, match=r"phase\(\): name='warmup' is not a phase \(queue, prefill, decode, kv_transfer\)"
    ):
        ferrum_otel.request(model=MODEL).phase("warmup")
    with pytest.raises(InvalidArgument, match=r"input_tokens=-3 is outside 0\.\.9223372036854775807"):
        ferrum_otel.request(model=MODEL, input_tokens=-3)
    with pytest.raises(InvalidArgument, match="temperature='hot' is not a finite number"):
        ferrum_otel.request(model=MODEL, temperature="hot")
    with pytest.raises(InvalidArgument, match=r"token\(n\): n=0 is outside 1\.\.4294967296"):
        ferrum_otel.request(model=MODEL).token(0)
    with pytest.raises(InvalidArgument, match="context=42 is not an OpenTelemetry Context"):
        ferrum_otel.request(model=MODEL, context=42)


def test_capture_content_is_opt_in():
    """Prompt and completion text are recorded only with capture_content=True."""
    with capture() as cap:
        with ferrum_otel.request(model=MODEL, prompt="secret prompt") as req:
            req.add_completion("secret answer")
        (root,) = cap.spans(NAME)
        assert s.GEN_AI_INPUT_MESSAGES not in root.attributes and s.GEN_AI_OUTPUT_MESSAGES not in root.attributes
    with capture(capture_content=True) as cap:
        with ferrum_otel.request(model=MODEL, prompt="hello") as req:
            req.add_completion("hi ")
            req.add_completion("there")
        (root,) = cap.spans(NAME)
        assert '"content": "hello"' in root.attributes[s.GEN_AI_INPUT_MESSAGES]
        assert '"content": "hi there"' in root.attributes[s.GEN_AI_OUTPUT_MESSAGES]


def test_no_sdk_is_silent_and_free():
    """With nothing configured request() hands out the shared no-op tracker and nothing is emitted."""
    ferrum_otel.shutdown()
    if trace._TRACER_PROVIDER is not None:  # noqa: SLF001 - another test set globals
        pytest.skip("a global tracer provider is set in this process")
    req = ferrum_otel.request(model=MODEL)
    assert isinstance(req, ferrum_otel.NoopTracker)
    with req as r:
        r.token()
        with r.phase("decode"):
            pass
    assert req.metrics is None and ferrum_otel.current_request() is None


def test_the_no_op_tracker_is_a_full_context_manager():
    """Its __enter__/__exit__ are C callables (no Python call per request): ``with``, ``async with``,
    ExitStack and AsyncExitStack (which pass the tracker explicitly) all get the tracker back, and
    an exception in the block always goes on, never swallowed."""
    import contextlib

    noop = ferrum_otel.NoopTracker()
    with noop as r:
        assert isinstance(r, ferrum_otel.NoopTracker)
    with contextlib.ExitStack() as stack:
        assert isinstance(stack.enter_context(noop), ferrum_otel.NoopTracker)
    for error in (ValueError("in the block"), KeyboardInterrupt(), GeneratorExit()):
        with pytest.raises(type(error)), noop:
            raise error
        with pytest.raises(type(error)), contextlib.ExitStack() as stack:
            stack.enter_context(noop)
            raise error

    async def run() -> None:
        async with noop as a:
            assert isinstance(a, ferrum_otel.NoopTracker)
        async with contextlib.AsyncExitStack() as astack:
            assert isinstance(await astack.enter_async_context(noop), ferrum_otel.NoopTracker)
            assert isinstance(astack.enter_context(noop), ferrum_otel.NoopTracker)
        with pytest.raises(RuntimeError):
            async with contextlib.AsyncExitStack() as astack:
                astack.enter_context(noop)
                raise RuntimeError("in the block")

    asyncio.run(run())


def test_sdk_disabled_by_environment(monkeypatch):
    """OTEL_SDK_DISABLED=true: configure() sets nothing up and requests are no-ops."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    handle = ferrum_otel.configure()
    try:
        assert not handle.enabled
        assert isinstance(ferrum_otel.request(model=MODEL), ferrum_otel.NoopTracker)
    finally:
        ferrum_otel.shutdown()


class _Exploding:
    """A span processor that fails on every call, like a broken exporter pipeline."""

    def on_start(self, span, parent_context=None):
        raise RuntimeError("processor broke on start")

    def on_end(self, span):
        raise RuntimeError("processor broke on end")

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def test_broken_pipeline_never_reaches_user_code(caplog):
    """A failing span pipeline and a failing meter are logged; the user's code runs on untouched."""
    from opentelemetry.sdk.trace import TracerProvider

    tp = TracerProvider()
    tp._active_span_processor._span_processors = (_Exploding(),)  # noqa: SLF001

    class BadMeter:
        def __getattr__(self, name):
            raise RuntimeError("meter broke")

    class BadMeterProvider:
        def get_meter(self, *a, **k):
            return _BrokenMeter()

    class _BrokenInstrument:
        def add(self, *a, **k):
            raise RuntimeError("add broke")

        def record(self, *a, **k):
            raise RuntimeError("record broke")

    class _BrokenMeter:
        def __getattr__(self, name):
            return lambda *a, **k: _BrokenInstrument()

    ferrum_otel.configure(tracer_provider=tp, meter_provider=BadMeterProvider())
    try:

        @ferrum_otel.instrument(model=MODEL)
        def generate(prompt):
            return prompt.upper()

        assert generate("ok") == "OK"
        with ferrum_otel.request(model=MODEL) as req:
            req.token()
        assert "the application goes on" in caplog.text
    finally:
        ferrum_otel.shutdown()


def test_second_configure_replaces_the_first():
    """A second configure() shuts the first pipeline down: each span reaches exactly one exporter."""
    with capture() as first:
        with ferrum_otel.request(model=MODEL):
            pass
        with capture() as second:
            with ferrum_otel.request(model=MODEL):
                pass
            assert len(second.spans(NAME)) == 1
        assert len(first.spans(NAME)) == 1


def test_unfinished_tracker_is_ended_when_dropped(cap):
    """A tracker dropped without finish() ends its span as cancelled instead of leaking it."""
    ferrum_otel.request(model=MODEL).token()
    gc.collect()
    (root,) = cap.spans(NAME)
    assert root.attributes[s.FERRUM_CANCELLED] is True
    assert cap.counter("ferrum.engine.active_requests") == 0


def test_span_kind_follows_the_parent(cap):
    """SERVER only when continuing a remote caller (traceparent, headers, or a remote current context);
    INTERNAL under a local span or with no parent; span_kind= overrides; phase spans stay INTERNAL."""
    from opentelemetry import context as otel_context
    from opentelemetry.propagate import extract

    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with ferrum_otel.request(model="remote", context=tp):
        pass
    with ferrum_otel.request(model="headers", context={"traceparent": tp}):
        pass
    token = otel_context.attach(extract({"traceparent": tp}))
    try:
        with ferrum_otel.request(model="attached"):
            pass
    finally:
        otel_context.detach(token)
    with trace.get_tracer("t").start_as_current_span("local"), ferrum_otel.request(model="local"):
        pass
    with ferrum_otel.request(model="none"):
        pass
    with ferrum_otel.request(model="forced", span_kind=SpanKind.CLIENT):
        pass
    with ferrum_otel.request(model="bad", context="garbage-traceparent"):
        pass
    kinds = {sp.name.split(" ")[-1]: sp.kind for sp in cap.spans() if sp.name.startswith("text_completion")}
    assert kinds == {
        "remote": SpanKind.SERVER,
        "headers": SpanKind.SERVER,
        "attached": SpanKind.SERVER,
        "local": SpanKind.INTERNAL,
        "none": SpanKind.INTERNAL,
        "forced": SpanKind.CLIENT,
        "bad": SpanKind.INTERNAL,
    }
    assert {sp.kind for sp in cap.spans() if sp.name in s.PHASES} <= {SpanKind.INTERNAL}


def test_token_times_take_eight_bytes_each_and_are_released_when_emitted(cap):
    """100,000 tokens held in 8-byte slots (a list of ints takes ~40 bytes each), freed at the end."""
    import tracemalloc

    n = 100_000
    with ferrum_otel.request(model="mem") as req:
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for _ in range(n):
                req.token()
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # An array grows by ~1/16 at a time: a little slack over 8 bytes, never a list's 40.
        assert (held - before) / n <= 9.0
    assert len(req._times) == 0 and req.output_tokens == n
    assert cap.telemetry.force_flush(5)
    (span,) = cap.spans("text_completion mem")
    assert span.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == n


def test_a_long_request_is_emitted_off_the_callers_thread(cap):
    """A request with many tokens returns its RequestMetrics at once; its inter-token statistics and spans
    are emitted by a background thread (exact timestamps), and flushing waits for them."""
    from ferrum_otel.tracing._deferred import DEFER_AT

    n = DEFER_AT + 10
    with ferrum_otel.request(model="long") as req:
        for _ in range(n):
            req.token()
    assert req.metrics is not None and req.metrics.output_tokens == n  # ready before the emission
    assert req.output_tokens == n and len(req._times) == 0  # the timestamps were handed over, not kept
    assert cap.telemetry.force_flush(5)
    (span,) = cap.spans("text_completion long")
    assert span.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == n
    assert span.attributes[s.FERRUM_ITL_MAX_MS] >= span.attributes[s.FERRUM_ITL_P50_MS] > 0
    assert cap.histogram("ferrum.request.inter_token_latency").count == 1
    assert cap.counter("ferrum.engine.active_requests") == 0
