"""@instrument on every kind of function: trees, streams abandoned early, no context leaks, scale."""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import ferrum_otel
from ferrum_otel import semconv as s

MODEL = "llama-3-8b"
NAME = f"text_completion {MODEL}"


def _only_root(cap):
    (root,) = cap.spans(NAME)
    return root


def test_sync_function(cap):
    """A sync function: one request; tokens marked through current_request(); wraps and signature kept."""

    @ferrum_otel.instrument(model=MODEL, input_tokens=lambda prompt, n: len(prompt.split()))
    def generate(prompt: str, n: int = 3) -> str:
        """Make text."""
        req = ferrum_otel.current_request()
        for _ in range(n):
            time.sleep(0.0005)
            req.token()
        return "a b c"

    assert generate("one two", n=4) == "a b c"
    assert generate.__name__ == "generate" and generate.__doc__ == "Make text."
    assert str(inspect.signature(generate)) == "(prompt: 'str', n: 'int' = 3) -> 'str'"
    root = _only_root(cap)
    assert [c.name for c in cap.children(root)] == ["prefill", "decode"]
    assert root.attributes[s.GEN_AI_USAGE_INPUT_TOKENS] == 2
    assert root.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 4


def test_bare_decorator_and_token_count_on_result(cap):
    """@instrument without arguments works; token_count(result) gives the output tokens."""

    @ferrum_otel.instrument
    def plain():
        return [1, 2, 3]

    @ferrum_otel.instrument(model=MODEL, token_count=len)
    def counted():
        return [1, 2, 3, 4, 5]

    assert plain() == [1, 2, 3] and counted() == [1, 2, 3, 4, 5]
    (root,) = cap.spans("text_completion")
    assert s.GEN_AI_REQUEST_MODEL not in root.attributes
    assert _only_root(cap).attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 5


def test_coroutine(cap):
    """An async function: the request span is current inside it and ends when it returns."""

    @ferrum_otel.instrument(model=MODEL)
    async def generate():
        req = ferrum_otel.current_request()
        await asyncio.sleep(0.001)
        req.token()
        return trace.get_current_span()

    span = asyncio.run(generate())
    root = _only_root(cap)
    assert span.get_span_context().span_id == root.context.span_id
    assert root.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 1


def test_generator_each_item_is_a_token(cap):
    """A generator: every item is a token; TTFT at the first; the return value passes through."""

    @ferrum_otel.instrument(model=MODEL, input_tokens=7)
    def stream(n):
        for i in range(n):
            time.sleep(0.0005)
            yield f"t{i} "
        return "done"

    gen = stream(6)
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            assert stop.value == "done"
            break
    assert items == [f"t{i} " for i in range(6)]
    root = _only_root(cap)
    children = cap.children(root)
    assert [c.name for c in children] == ["prefill", "decode"]
    assert root.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 6
    # prefill ends at the first token: TTFT after the request began.
    assert children[0].end_time - root.start_time == pytest.approx(root.attributes[s.FERRUM_TTFT_MS] * 1e6, abs=1)
    assert cap.histogram("gen_ai.server.time_to_first_token").count == 1


def test_generator_token_count_and_send(cap):
    """token_count(item) counts chunks; values sent into the stream reach the inner generator."""

    @ferrum_otel.instrument(model=MODEL, token_count=lambda chunk: len(chunk))
    def stream():
        got = yield ["a", "b"]
        yield [got] * 3

    gen = stream()
    assert next(gen) == ["a", "b"]
    assert gen.send("x") == ["x", "x", "x"]
    with pytest.raises(StopIteration):
        next(gen)
    assert _only_root(cap).attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 5


def test_generator_abandoned_with_close(cap):
    """close() mid-stream ends the span as cancelled, runs the inner generator's cleanup."""
    cleaned = []

    @ferrum_otel.instrument(model=MODEL)
    def stream():
        try:
            yield from range(100)
        finally:
            cleaned.append(True)

    gen = stream()
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    root = _only_root(cap)
    assert root.attributes[s.FERRUM_CANCELLED] is True and root.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert cleaned == [True]
    assert cap.counter("ferrum.engine.requests_cancelled") == 1


def test_generator_abandoned_to_garbage_collection(cap):
    """A stream dropped without close() is ended by garbage collection."""

    @ferrum_otel.instrument(model=MODEL)
    def stream():
        yield from range(100)

    gen = stream()
    next(gen)
    del gen
    gc.collect()
    assert _only_root(cap).attributes[s.FERRUM_CANCELLED] is True


def test_generator_never_started_emits_nothing(cap):
    """A generator created but never iterated makes no request at all."""

    @ferrum_otel.instrument(model=MODEL)
    def stream():
        yield 1

    stream()
    gc.collect()
    assert cap.spans() == []


def test_generator_error_propagates(cap):
    """An exception inside the stream marks the span failed and reaches the consumer unchanged."""

    class Overloaded(Exception):
        pass

    @ferrum_otel.instrument(model=MODEL)
    def stream():
        yield 1
        raise Overloaded("queue full")

    with pytest.raises(Overloaded, match="queue full"):
        list(stream())
    root = _only_root(cap)
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes[s.ERROR_TYPE].endswith("Overloaded")


def test_generator_does_not_leak_context(cap):
    """Between items the consumer's current span is its own; inside the body it is the request's."""
    inside = []

    @ferrum_otel.instrument(model=MODEL)
    def stream():
        for i in range(3):
            inside.append(trace.get_current_span().get_span_context().span_id)
            yield i

    before = trace.get_current_span()
    gen = stream()
    next(gen)
    assert trace.get_current_span() is before and ferrum_otel.current_request() is None
    next(gen)
    gen.close()
    assert trace.get_current_span() is before
    root = _only_root(cap)
    assert set(inside) == {root.context.span_id}


def test_async_generator(cap):
    """An async generator: each item a token; spans opened inside nest under the request."""
    tracer = cap.telemetry.tracer_provider.get_tracer("app")

    @ferrum_otel.instrument(model=MODEL, input_tokens=2)
    async def stream(n):
        with tracer.start_as_current_span("sample"):
            await asyncio.sleep(0.001)
        for i in range(n):
            await asyncio.sleep(0.0005)
            yield i

    async def main():
        return [x async for x in stream(4)]

    assert asyncio.run(main()) == [0, 1, 2, 3]
    root = _only_root(cap)
    (sample,) = cap.spans("sample")
    assert sample.parent.span_id == root.context.span_id
    assert root.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 4
    # prefill runs from the request's start to the first token, so it encloses "sample".
    assert [c.name for c in cap.children(root)] == ["prefill", "sample", "decode"]


def test_async_generator_aclose_and_task_cancel(cap):
    """aclose() and cancelling the consuming task both end the stream as cancelled, without leaks."""
    closed = []

    @ferrum_otel.instrument(model=MODEL)
    async def stream():
        try:
            while True:
                await asyncio.sleep(0.001)
                yield "tok"
        finally:
            closed.append(True)

    async def main():
        before = trace.get_current_span()
        agen = stream()
        await agen.__anext__()
        await agen.aclose()
        assert trace.get_current_span() is before

        async def consume():
            async for _ in stream():
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert trace.get_current_span() is before

    asyncio.run(main())
    roots = cap.spans(NAME)
    assert len(roots) == 2 and all(r.attributes[s.FERRUM_CANCELLED] is True for r in roots)
    assert closed == [True, True]
    assert cap.counter("ferrum.engine.requests_failed") == 0


def test_methods_and_per_call_model(cap):
    """On methods: model and client id taken from the call's arguments."""

    class Engine:
        def __init__(self, name):
            self.name = name

        @ferrum_otel.instrument(
            model=lambda self, prompt, **kw: self.name, client_id=lambda self, prompt, **kw: kw.get("user")
        )
        def generate(self, prompt, user=None):
            return prompt[::-1]

    assert Engine("qwen").generate("abc", user="u1") == "cba"
    (root,) = cap.spans("text_completion qwen")
    assert root.attributes[s.FERRUM_CLIENT_ID] == "u1"


def test_traceparent_from_incoming_request(cap):
    """context= as a callable of the arguments takes the caller's traceparent header."""
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @ferrum_otel.instrument(model=MODEL, context=lambda headers: headers)
    async def handle(headers):
        yield "x"

    async def main():
        return [x async for x in handle({"traceparent": tp})]

    asyncio.run(main())
    root = _only_root(cap)
    assert format(root.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_no_sdk_passthrough():
    """With no SDK the decorated functions behave exactly as the originals."""
    ferrum_otel.shutdown()
    if trace._TRACER_PROVIDER is not None:  # noqa: SLF001
        pytest.skip("a global tracer provider is set in this process")

    @ferrum_otel.instrument(model=MODEL)
    def gen():
        got = yield 1
        yield got

    g = gen()
    assert next(g) == 1 and g.send(5) == 5


def _check_tree(cap, root, n_tokens):
    kids = cap.children(root)
    assert [k.name for k in kids] == ["prefill", "decode"]
    assert root.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == n_tokens
    for kid in kids:
        assert kid.context.trace_id == root.context.trace_id
        assert root.start_time <= kid.start_time <= kid.end_time <= root.end_time


def test_thousand_concurrent_requests_threads_and_tasks(cap):
    """1,000 concurrent requests (threads and asyncio tasks) give 1,000 separate, correct trees."""

    @ferrum_otel.instrument(model=MODEL, request_id=lambda i: f"thread-{i}")
    def sync_stream(i):
        for _ in range(2 + i % 3):
            time.sleep(0.0001)
            yield i

    @ferrum_otel.instrument(model=MODEL, request_id=lambda i: f"task-{i}")
    async def async_stream(i):
        for _ in range(2 + i % 3):
            await asyncio.sleep(0.0001)
            yield i

    barrier = threading.Barrier(8)

    def run_threaded(i):
        if i < 8:
            barrier.wait()
        assert list(sync_stream(i)) == [i] * (2 + i % 3)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(run_threaded, range(500)))

    async def many():
        async def one(i):
            assert [x async for x in async_stream(i)] == [i] * (2 + i % 3)

        await asyncio.gather(*(one(i) for i in range(500)))

    asyncio.run(many())
    roots = cap.spans(NAME)
    assert len(roots) == 1000
    assert len({r.context.trace_id for r in roots}) == 1000
    by_id = {r.attributes[s.FERRUM_REQUEST_EXTERNAL_ID]: r for r in roots}
    assert len(by_id) == 1000
    for key, root in by_id.items():
        i = int(key.split("-")[1])
        assert root.parent is None
        _check_tree(cap, root, 2 + i % 3)
    assert cap.counter("ferrum.engine.requests_completed") == 1000
    assert cap.counter("ferrum.engine.active_requests") == 0
