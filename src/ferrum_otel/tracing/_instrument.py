"""``@instrument``: one request per call of a sync function, coroutine, generator or async generator.

Everything that can be decided at decoration time is: the function's kind, which
options are constants and which are callables of the call's arguments.  With no SDK
configured a call costs one extra function call and a check.

A generator's body runs in a context of its own (``contextvars.Context.run`` on each
step), in which the request span is current: spans the body opens nest under it, while
the consumer's context never changes, so a stream abandoned mid-way leaks nothing.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from time import perf_counter_ns
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

from .. import semconv as s
from .._log import InvalidArgument, log_failure, refuse
from .._runtime import active
from . import _args
from ._emit import OK
from ._request import parent_context, request_params, request_values
from ._tracker import CANCELLATION, RequestTracker

__all__ = ["instrument"]

F = TypeVar("F", bound=Callable[..., Any])


_PER_CALL = ("model", "request_id", "client_id", "input_tokens", "context", "prompt")


class _Spec:
    """What the decorator was told, resolved once."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self.fn = fn
        self.where = where = f"@instrument({getattr(fn, '__qualname__', fn)!r})"
        self.operation: str = options["operation"]
        self.provider: str = options["provider"]
        for key, default in (("operation", s.OPERATION_TEXT_COMPLETION), ("provider", s.PROVIDER_FERRUM)):
            if not isinstance(options[key], str) or not options[key]:
                refuse(where, key, options[key], "is not a non-empty string")
                setattr(self, key, default)
        self.token_count: Callable[[Any], int] | None = options["token_count"]
        if self.token_count is not None and not callable(self.token_count):
            refuse(where, "token_count", self.token_count, "is not a callable")
            self.token_count = None
        # Constants are settled (and checked) now; only the options given as callables run per call.
        constants = {key: (None if callable(options[key]) else options[key]) for key in _PER_CALL}
        model, client_id, input_tokens, _parent, prompt = request_values(
            where, constants["model"], constants["client_id"], constants["input_tokens"], None, constants["prompt"]
        )
        constants.update(model=model, client_id=client_id, input_tokens=input_tokens, prompt=prompt)
        if constants["context"] is not None:
            constants["context"] = _args.context_arg(where, constants["context"])
        self.constants = constants
        self.callables = [(key, options[key]) for key in _PER_CALL if callable(options[key])]
        self.params = request_params(
            where,
            options["max_tokens"],
            options["temperature"],
            options["top_p"],
            options["top_k"],
            options["seed"],
            options["stream"],
        )
        self.attributes = _args.attributes_arg(where, options["attributes"])
        self.kind = None if options["span_kind"] is None else _args.span_kind(where, options["span_kind"])

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RequestTracker | None:
        rt = active()
        if rt is None:
            return None
        try:
            v = self.constants
            model, client_id, input_tokens, prompt = v["model"], v["client_id"], v["input_tokens"], v["prompt"]
            context = v["context"]
            if self.callables:
                v = dict(v)
                for key, fn in self.callables:
                    v[key] = fn(*args, **kwargs)
                model, client_id, input_tokens, _parent, prompt = request_values(
                    self.where, v["model"], v["client_id"], v["input_tokens"], None, v["prompt"]
                )
                context = _args.context_arg(self.where, v["context"]) if v["context"] is not None else None
            if prompt is None and rt.capture_content:
                prompt = next((a for a in args if isinstance(a, str)), None)
            return RequestTracker(
                rt,
                model,
                self.operation,
                self.provider,
                v["request_id"],
                client_id,
                input_tokens,
                self.params,
                self.attributes,
                parent_context(context),
                prompt,
                self.kind,
            )
        except InvalidArgument:
            raise
        except Exception:  # noqa: BLE001 - instrumentation must not break the call
            log_failure(f"starting a request for {self.where}")
            return None

    def count(self, item: Any) -> int:
        try:
            n = self.token_count(item)  # type: ignore[misc]
            return n if type(n) is int and n >= 0 else 1
        except Exception:  # noqa: BLE001
            log_failure(f"token_count() of {self.where}")
            return 1

    def complete(self, tracker: RequestTracker, result: Any) -> None:
        if self.token_count is not None:
            tracker.set_output_tokens(self.count(result))
        if isinstance(result, str):
            tracker.add_completion(result)
        tracker._end(OK, "stop")


def _wrap_function(spec: _Spec) -> Callable[..., Any]:
    fn = spec.fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracker = spec.start(args, kwargs)
        if tracker is None:
            return fn(*args, **kwargs)
        token = tracker._enter_context()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            tracker._exit_with(exc)
            raise
        finally:
            otel_context.detach(token)
        spec.complete(tracker, result)
        return result

    return wrapper


def _wrap_coroutine(spec: _Spec) -> Callable[..., Any]:
    fn = spec.fn

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracker = spec.start(args, kwargs)
        if tracker is None:
            return await fn(*args, **kwargs)
        token = tracker._enter_context()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            tracker._exit_with(exc)
            raise
        finally:
            otel_context.detach(token)
        spec.complete(tracker, result)
        return result

    return wrapper


def _collector(tracker: RequestTracker) -> Callable[[str], None] | None:
    return tracker.add_completion if tracker._rt.capture_content else None


def _own_context(tracker: RequestTracker) -> contextvars.Context:
    ctx = contextvars.copy_context()
    ctx.run(tracker._enter_context)  # never detached: the context is dropped with the stream
    return ctx


def _wrap_generator(spec: _Spec) -> Callable[..., Any]:
    fn = spec.fn
    count = spec.count if spec.token_count is not None else None

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        tracker = spec.start(args, kwargs)
        if tracker is None:
            result: Any = yield from fn(*args, **kwargs)
            return result
        ctx = _own_context(tracker)
        try:
            gen = ctx.run(fn, *args, **kwargs)
        except BaseException as exc:
            tracker._exit_with(exc)
            raise
        step, value = gen.send, None
        run, append, collect = ctx.run, tracker._times.append, _collector(tracker)
        while True:
            try:
                item = run(step, value)
            except StopIteration as stop:
                tracker._end(OK, "stop")
                final: Any = stop.value
                return final
            except BaseException as exc:
                tracker._exit_with(exc)
                raise
            if count is None:
                append(perf_counter_ns())  # the hot path: one clock read and one append
            else:
                tracker.token(count(item))
            if collect is not None and isinstance(item, str):
                collect(item)
            try:
                value = yield item
                step = gen.send
            except GeneratorExit:
                # close() or garbage collection: the consumer abandoned the stream.
                try:
                    ctx.run(gen.close)
                finally:
                    tracker.cancel()
                raise
            except BaseException as exc:  # noqa: BLE001 - thrown into the generator, which decides
                step, value = gen.throw, exc

    return wrapper


class _InContext:
    """Awaits ``awaitable`` with each of its steps run inside ``ctx``."""

    __slots__ = ("_ctx", "_it")

    def __init__(self, ctx: contextvars.Context, awaitable: Any) -> None:
        self._ctx = ctx
        self._it = awaitable.__await__()

    def __await__(self) -> _InContext:
        return self

    def __iter__(self) -> _InContext:
        return self

    def __next__(self) -> Any:
        return self._ctx.run(self._it.send, None)

    def send(self, value: Any) -> Any:
        return self._ctx.run(self._it.send, value)

    def throw(self, *exc: Any) -> Any:
        return self._ctx.run(self._it.throw, *exc)

    def close(self) -> None:
        self._ctx.run(self._it.close)


def _wrap_async_generator(spec: _Spec) -> Callable[..., Any]:
    fn = spec.fn
    count = spec.count if spec.token_count is not None else None

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        tracker = spec.start(args, kwargs)
        if tracker is None:
            async for item in fn(*args, **kwargs):
                yield item
            return
        ctx = _own_context(tracker)
        try:
            agen = ctx.run(fn, *args, **kwargs)
        except BaseException as exc:
            tracker._exit_with(exc)
            raise
        # The same protocol as the generator loop above: a generator and an async generator
        # cannot share one body without a call per token on the hot path.
        step, value = agen.asend, None
        append, collect = tracker._times.append, _collector(tracker)
        while True:
            try:
                item = await _InContext(ctx, step(value))
            except StopAsyncIteration:
                tracker._end(OK, "stop")
                return
            except BaseException as exc:
                tracker._exit_with(exc)
                raise
            if count is None:
                append(perf_counter_ns())  # the hot path: one clock read and one append
            else:
                tracker.token(count(item))
            if collect is not None and isinstance(item, str):
                collect(item)
            try:
                value = yield item
                step = agen.asend
            except GeneratorExit:
                # aclose(), cancellation of the consumer, or garbage collection.
                try:
                    await _InContext(ctx, agen.aclose())
                finally:
                    tracker.cancel()
                raise
            except BaseException as exc:
                if isinstance(exc, CANCELLATION):
                    try:
                        await _InContext(ctx, agen.aclose())
                    finally:
                        tracker.cancel()
                    raise
                step, value = agen.athrow, exc

    return wrapper


@overload
def instrument(func: F) -> F: ...


@overload
def instrument(
    func: None = None,
    *,
    model: str | Callable[..., str] | None = None,
    operation: str = ...,
    provider: str = ...,
    token_count: Callable[[Any], int] | None = None,
    input_tokens: int | Callable[..., int] | None = None,
    request_id: Any = None,
    client_id: str | Callable[..., str] | None = None,
    context: Any = None,
    prompt: str | Callable[..., str] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    seed: int | None = None,
    stream: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
    span_kind: SpanKind | None = None,
) -> Callable[[F], F]: ...


def instrument(
    func: Callable[..., Any] | None = None,
    *,
    model: str | Callable[..., str] | None = None,
    operation: str = s.OPERATION_TEXT_COMPLETION,
    provider: str = s.PROVIDER_FERRUM,
    token_count: Callable[[Any], int] | None = None,
    input_tokens: int | Callable[..., int] | None = None,
    request_id: Any = None,
    client_id: str | Callable[..., str] | None = None,
    context: Any = None,
    prompt: str | Callable[..., str] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    seed: int | None = None,
    stream: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
    span_kind: SpanKind | None = None,
) -> Any:
    """Trace each call of the decorated function as one inference request.

    Works on sync functions, coroutines, generators and async generators (and methods).
    ``model``, ``input_tokens``, ``request_id``, ``client_id``, ``context`` and ``prompt``
    may be constants or callables that receive the call's arguments.  For generators each
    yielded item is one token unless ``token_count(item)`` says how many; for functions
    ``token_count(result)`` gives the output tokens.
    """
    options = dict(
        model=model,
        operation=operation,
        provider=provider,
        token_count=token_count,
        input_tokens=input_tokens,
        request_id=request_id,
        client_id=client_id,
        context=context,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        stream=stream,
        attributes=attributes,
        span_kind=span_kind,
    )

    def decorate(fn: F) -> F:
        if not callable(fn):
            # Not a request-path value: a decorator on something that cannot be called is a bug.
            raise TypeError(f"@instrument decorates a function, not {type(fn).__name__}")
        spec = _Spec(fn, options)
        if inspect.isasyncgenfunction(fn):
            wrapped = _wrap_async_generator(spec)
        elif inspect.isgeneratorfunction(fn):
            wrapped = _wrap_generator(spec)
        elif inspect.iscoroutinefunction(fn):
            wrapped = _wrap_coroutine(spec)
        else:
            wrapped = _wrap_function(spec)
        return wrapped  # type: ignore[return-value]

    return decorate if func is None else decorate(func)
