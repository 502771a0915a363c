"""``request()`` and ``current_request()``: the context-manager way to track a request."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Mapping

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.propagate import extract

from .. import semconv as s
from opentelemetry import trace as _trace_api

from .. import _runtime
from .._runtime import active, log_failure
from ._noop import NOOP, NoopTracker
from ._tracker import CURRENT_KEY, RequestTracker

__all__ = ["request", "current_request", "request_params", "parent_context"]


def parent_context(context: Context | Mapping[str, str] | str | None) -> Context | None:
    """An OTel Context as given, or one extracted from carrier headers or a bare ``traceparent``."""
    if context is None or isinstance(context, Context):
        return context
    if isinstance(context, str):
        return extract({"traceparent": context})
    if isinstance(context, Mapping):
        return extract(context)
    raise TypeError(
        f"context= takes an OpenTelemetry Context, a dict of propagation headers or a traceparent string, "
        f"not {type(context).__name__}"
    )


def request_params(
    max_tokens: int | None, temperature: float | None, top_p: float | None, top_k: float | None,
    seed: int | None, stream: bool | None,
) -> dict[str, Any] | None:
    """The gen_ai.request.* attributes that were given, type-checked (top_k is a double in the spec)."""
    params: dict[str, Any] = {}
    if max_tokens is not None:
        params[s.GEN_AI_REQUEST_MAX_TOKENS] = _int(max_tokens, "max_tokens")
    if temperature is not None:
        params[s.GEN_AI_REQUEST_TEMPERATURE] = _float(temperature, "temperature")
    if top_p is not None:
        params[s.GEN_AI_REQUEST_TOP_P] = _float(top_p, "top_p")
    if top_k is not None:
        params[s.GEN_AI_REQUEST_TOP_K] = _float(top_k, "top_k")
    if seed is not None:
        params[s.GEN_AI_REQUEST_SEED] = _int(seed, "seed")
    if stream is not None:
        if type(stream) is not bool:
            raise TypeError(f"stream must be bool, got {stream!r}")
        params[s.GEN_AI_REQUEST_STREAM] = stream
    return params or None


def _int(value: Any, name: str) -> int:
    if type(value) is not int:
        raise TypeError(f"{name} must be int, got {value!r}")
    return value


def _float(value: Any, name: str) -> float:
    if type(value) is float:
        return value
    if type(value) is not int:
        raise TypeError(f"{name} must be float, got {value!r}")
    return float(value)


def _start_request(
    model: str | None = None,
    *,
    request_id: Any = None,
    client_id: str | None = None,
    input_tokens: int | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    seed: int | None = None,
    stream: bool | None = None,
    operation: str = s.OPERATION_TEXT_COMPLETION,
    provider: str = s.PROVIDER_FERRUM,
    attributes: dict[str, Any] | None = None,
    context: Context | Mapping[str, str] | str | None = None,
    prompt: str | None = None,
) -> RequestTracker | NoopTracker:
    """Track one inference request; use as ``with`` / ``async with`` or call ``finish()`` yourself.

    The request span starts now.  ``context`` (an OTel Context, propagation headers or a
    ``traceparent`` string) makes it join the caller's trace.  ``prompt`` is recorded only
    with ``configure(capture_content=True)``.  With no SDK configured this returns a shared
    no-op tracker and costs next to nothing.
    """
    rt = active()
    if rt is None:
        return NOOP
    if input_tokens is not None and (type(input_tokens) is not int or input_tokens < 0):
        raise ValueError(f"input_tokens must be a non-negative integer, got {input_tokens!r}")
    if attributes is not None and not isinstance(attributes, Mapping):
        raise TypeError(f"attributes must be a mapping of attribute names to values, got {type(attributes).__name__}")
    params = request_params(max_tokens, temperature, top_p, top_k, seed, stream)
    parent = parent_context(context)
    try:
        return RequestTracker(
            rt, model, operation, provider, request_id, client_id, input_tokens, params,
            dict(attributes) if attributes else None, parent, prompt,
        )
    except Exception:  # noqa: BLE001 - a broken SDK must not break inference code
        log_failure("starting a request")
        return NOOP


if TYPE_CHECKING:
    request = _start_request
else:

    def request(model=None, **options):
        # With no SDK this must cost next to nothing; binding fifteen keyword-only
        # defaults costs more than the rest of the call, so the full signature is bound
        # only once an SDK is there (unknown keywords still raise TypeError then).
        if _runtime._installed is None and (_runtime._disabled or _trace_api._TRACER_PROVIDER is None):
            if options:
                _check_names(options)
            return NOOP
        return _start_request(model, **options)

    request.__doc__ = _start_request.__doc__
    request.__signature__ = inspect.signature(_start_request)
    request.__wrapped__ = _start_request


_NAMES = frozenset(inspect.signature(_start_request).parameters)


def _check_names(options: dict[str, Any]) -> None:
    unknown = options.keys() - _NAMES
    if unknown:
        raise TypeError(f"request() got an unexpected keyword argument {sorted(unknown)[0]!r}")


def current_request() -> RequestTracker | None:
    """The tracker of the request that encloses this code, or None."""
    tracker = otel_context.get_value(CURRENT_KEY)
    return tracker if isinstance(tracker, RequestTracker) else None
