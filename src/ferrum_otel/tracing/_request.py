"""``request()`` and ``current_request()``: the context-manager way to track a request."""

from __future__ import annotations

from typing import Any, Mapping

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.propagate import extract

from .. import semconv as s
from .._runtime import active, log_failure
from ._tracker import CURRENT_KEY, NOOP, NoopTracker, RequestTracker

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
    max_tokens: int | None, temperature: float | None, top_p: float | None, top_k: int | None,
    seed: int | None, stream: bool | None,
) -> dict[str, Any] | None:
    params: dict[str, Any] = {}
    for key, value, kind in (
        (s.GEN_AI_REQUEST_MAX_TOKENS, max_tokens, int), (s.GEN_AI_REQUEST_TEMPERATURE, temperature, float),
        (s.GEN_AI_REQUEST_TOP_P, top_p, float), (s.GEN_AI_REQUEST_TOP_K, top_k, float),  # the spec types top_k double
        (s.GEN_AI_REQUEST_SEED, seed, int), (s.GEN_AI_REQUEST_STREAM, stream, bool),
    ):
        if value is None:
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"{key.rsplit('.', 1)[-1]} must be {kind.__name__}, got {value!r}")
        params[key] = value
    return params or None


def request(
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
            rt, model=model, operation=operation, provider=provider, request_id=request_id, client_id=client_id,
            input_tokens=input_tokens, params=params, attributes=dict(attributes) if attributes else None,
            context=parent, prompt=prompt,
        )
    except Exception:  # noqa: BLE001 - a broken SDK must not break inference code
        log_failure("starting a request")
        return NOOP


def current_request() -> RequestTracker | None:
    """The tracker of the request that encloses this code, or None."""
    tracker = otel_context.get_value(CURRENT_KEY)
    return tracker if isinstance(tracker, RequestTracker) else None
