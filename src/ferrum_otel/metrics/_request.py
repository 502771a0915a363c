"""The request instruments, made once per meter from the definitions in semconv."""

from __future__ import annotations

from typing import Any

from opentelemetry.metrics import Meter

from .. import semconv
from ..semconv import Instrument

__all__ = ["RequestInstruments", "make_instrument"]


def make_instrument(meter: Meter, spec: Instrument) -> Any:
    """Create the instrument ``spec`` describes; histograms advise the spec's bucket boundaries,
    so even a MeterProvider the host made itself aggregates seconds into useful buckets."""
    if spec.kind == "histogram":
        return meter.create_histogram(
            spec.name, unit=spec.unit, description=spec.description,
            explicit_bucket_boundaries_advisory=list(spec.buckets or ()),
        )
    if spec.kind == "counter":
        return meter.create_counter(spec.name, unit=spec.unit, description=spec.description)
    if spec.kind == "updowncounter":
        return meter.create_up_down_counter(spec.name, unit=spec.unit, description=spec.description)
    raise ValueError(f"{spec.name}: no synchronous instrument of kind {spec.kind!r}")


class RequestInstruments:
    """Attribute access to each request instrument (``.duration``, ``.ttft``, ...)."""

    __slots__ = (
        "active",
        "cancelled",
        "completed",
        "decode",
        "decode_tokens",
        "duration",
        "failed",
        "itl",
        "preemptions",
        "prefill",
        "prefill_tokens",
        "queue",
        "requests",
        "token_usage",
        "tpot",
        "ttft",
    )

    def __init__(self, meter: Meter) -> None:
        s = semconv
        self.duration = make_instrument(meter, s.SERVER_REQUEST_DURATION)
        self.ttft = make_instrument(meter, s.SERVER_TIME_TO_FIRST_TOKEN)
        self.tpot = make_instrument(meter, s.SERVER_TIME_PER_OUTPUT_TOKEN)
        self.token_usage = make_instrument(meter, s.CLIENT_TOKEN_USAGE)
        self.queue = make_instrument(meter, s.QUEUE_DURATION)
        self.prefill = make_instrument(meter, s.PREFILL_DURATION)
        self.decode = make_instrument(meter, s.DECODE_DURATION)
        self.itl = make_instrument(meter, s.INTER_TOKEN_LATENCY)
        self.requests = make_instrument(meter, s.REQUESTS_TOTAL)
        self.completed = make_instrument(meter, s.REQUESTS_COMPLETED)
        self.failed = make_instrument(meter, s.REQUESTS_FAILED)
        self.cancelled = make_instrument(meter, s.REQUESTS_CANCELLED)
        self.prefill_tokens = make_instrument(meter, s.PREFILL_TOKENS_TOTAL)
        self.decode_tokens = make_instrument(meter, s.DECODE_TOKENS_TOTAL)
        self.preemptions = make_instrument(meter, s.PREEMPTIONS_TOTAL)
        self.active = make_instrument(meter, s.ACTIVE_REQUESTS)
