"""``request()`` and ``current_request()``: the context-manager way to track a request."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as _trace_api
from opentelemetry.context import Context
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind

from .. import _runtime
from .. import semconv as s
from .._log import InvalidArgument, log_failure, refuse
from .._runtime import active
from .._wire import INT64_MAX
from . import _args
from ._noop import NOOP, NoopTracker
from ._tracker import CURRENT_KEY, RequestTracker

__all__ = ["current_request", "parent_context", "request", "request_params", "request_values"]


def parent_context(context: Context | Mapping[str, str] | str | None) -> Context | None:
    """An OTel Context as given, or one extracted from carrier headers or a bare ``traceparent``
    (a malformed one yields an empty context: the request starts its own trace)."""
    if context is None or isinstance(context, Context):
        return context
    try:
        if isinstance(context, str):
            return extract({"traceparent": context})
        if isinstance(context, Mapping):
            return extract(context)
    except Exception:  # noqa: BLE001 - a carrier the propagator chokes on is no parent
        log_failure("reading the trace context given to a request")
    return None


def request_params(
    call: str,
    max_tokens: Any,
    temperature: Any,
    top_p: Any,
    top_k: Any,
    seed: Any,
    stream: Any,
) -> dict[str, Any] | None:
    """The gen_ai.request.* attributes that were given and are usable (top_k is a double in the
    spec).  ``stream`` is recorded only when true: the spec sets it for streaming requests."""
    # Straight-line, not a loop over (key, value, check) tuples: half the cost per request.
    params: dict[str, Any] = {}
    if max_tokens is not None and (v := _args.integer(call, "max_tokens", max_tokens)) is not None:
        params[s.GEN_AI_REQUEST_MAX_TOKENS] = v
    if seed is not None and (v := _args.integer(call, "seed", seed)) is not None:
        params[s.GEN_AI_REQUEST_SEED] = v
    if temperature is not None and (f := _args.number(call, "temperature", temperature)) is not None:
        params[s.GEN_AI_REQUEST_TEMPERATURE] = f
    if top_p is not None and (f := _args.number(call, "top_p", top_p)) is not None:
        params[s.GEN_AI_REQUEST_TOP_P] = f
    if top_k is not None and (f := _args.number(call, "top_k", top_k)) is not None:
        params[s.GEN_AI_REQUEST_TOP_K] = f
    if stream is not None and _args.flag(call, "stream", stream):
        params[s.GEN_AI_REQUEST_STREAM] = True
    return params or None


def request_values(
    call: str,
    model: Any,
    client_id: Any,
    input_tokens: Any,
    context: Any,
    prompt: Any,
) -> tuple[str | None, str | None, int | None, Context | None, str | None]:
    """The per-request values, each usable or None."""
    if model is not None and not isinstance(model, str):
        model = _args.text(call, "model", model)
    if client_id is not None and not isinstance(client_id, str):
        client_id = _args.text(call, "client_id", client_id)
    if input_tokens is not None:
        input_tokens = _args.count(call, "input_tokens", input_tokens)
    if prompt is not None and not isinstance(prompt, str):
        prompt = _args.text(call, "prompt", prompt)
    parent = parent_context(_args.context_arg(call, context)) if context is not None else None
    return model, client_id, input_tokens, parent, prompt


def _name(call: str, field: str, value: Any, default: str) -> str:
    if isinstance(value, str) and value:
        return value
    refuse(call, field, value, "is not a non-empty string")
    return default


def _start_request(
    model: str | None = None,
    *,
    request_id: Any = None,
    client_id: str | None = None,
    input_tokens: int | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: float | None = None,
    seed: int | None = None,
    stream: bool | None = None,
    operation: str = s.OPERATION_TEXT_COMPLETION,
    provider: str = s.PROVIDER_FERRUM,
    attributes: Mapping[str, Any] | None = None,
    context: Context | Mapping[str, str] | str | None = None,
    prompt: str | None = None,
    span_kind: SpanKind | None = None,
    energy_devices: Sequence[int | str] | None = None,
) -> RequestTracker | NoopTracker:
    """Track one inference request; use as ``with`` / ``async with`` or call ``finish()`` yourself.

    The request span starts now.  ``context`` (an OTel Context, propagation headers or a
    ``traceparent`` string) makes it join the caller's trace.  ``prompt`` is recorded only
    with ``configure(capture_content=True)``.  The span is SERVER when it continues a remote
    caller's context, INTERNAL otherwise; ``span_kind`` overrides.  ``energy_devices``
    (GPU indexes or UUIDs) says which GPUs this request ran on, for its energy, where that is
    not every GPU ``configure(energy_devices=...)`` names.  With no SDK configured this returns a shared
    no-op tracker and costs next to nothing.  A value that cannot be used is dropped with a
    warning (``InvalidArgument`` in strict mode); nothing else here raises.
    """
    rt = active()
    call = "request()"
    model, client_id, input_tokens, parent, prompt = request_values(
        call, model, client_id, input_tokens, context, prompt
    )
    params = request_params(call, max_tokens, temperature, top_p, top_k, seed, stream)
    attrs = _args.attributes_arg(call, attributes) if attributes is not None else None
    if operation is not s.OPERATION_TEXT_COMPLETION:
        operation = _name(call, "operation", operation, s.OPERATION_TEXT_COMPLETION)
    if provider is not s.PROVIDER_FERRUM:
        provider = _name(call, "provider", provider, s.PROVIDER_FERRUM)
    if span_kind is not None:
        span_kind = _args.span_kind(call, span_kind)
    gpus = _args.devices(call, "energy_devices", energy_devices) if energy_devices is not None else None
    if rt is None:
        return NOOP
    try:
        return RequestTracker(
            rt,
            model,
            operation,
            provider,
            request_id,
            client_id,
            input_tokens,
            params,
            attrs,
            parent,
            prompt,
            span_kind,
            gpus,
        )
    except InvalidArgument:
        raise
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
                if not _looks_fine(options):
                    _start_request(model, **options)  # the same checks, the same warnings
            if model is not None and type(model) is not str:
                _args.text("request()", "model", model)
            return NOOP
        return _start_request(model, **options)

    request.__doc__ = _start_request.__doc__
    request.__signature__ = inspect.signature(_start_request)
    request.__wrapped__ = _start_request


_NAMES = frozenset(inspect.signature(_start_request).parameters)


def _finite(v: Any) -> bool:
    return type(v) is float and math.isfinite(v)


# With no SDK a request must cost next to nothing, yet be checked as with one.  Whole numbers
# and strings are tested inline below; these are the other usual values.  Anything else goes
# through the full checks (and their warnings).
_FAST_CHECKS: dict[str, Any] = {
    "temperature": _finite,
    "top_p": _finite,
    "top_k": _finite,
    "stream": lambda v: type(v) is bool,
    "request_id": lambda v: True,
}


def _looks_fine(options: dict[str, Any]) -> bool:
    for key, value in options.items():
        t = type(value)
        # The common cases inline: a count, a finite number, a string; the rest by table.
        if t is int:
            if not 0 <= value <= INT64_MAX or key not in _INT_KEYS:
                return False
        elif t is str:
            if key not in _STR_KEYS or not value:
                return False
        elif value is not None:
            check = _FAST_CHECKS.get(key)
            if check is None or not check(value):
                return False
    return True


_INT_KEYS = frozenset({"input_tokens", "max_tokens", "seed", "temperature", "top_p", "top_k", "request_id"})
_STR_KEYS = frozenset({"client_id", "prompt", "request_id", "operation", "provider"})


def _check_names(options: dict[str, Any]) -> None:
    if not _NAMES.issuperset(options):
        unknown = options.keys() - _NAMES
        raise TypeError(f"request() got an unexpected keyword argument {sorted(unknown)[0]!r}")


def current_request() -> RequestTracker | None:
    """The tracker of the request that encloses this code, or None."""
    tracker = otel_context.get_value(CURRENT_KEY)
    return tracker if isinstance(tracker, RequestTracker) else None
