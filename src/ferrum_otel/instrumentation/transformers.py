"""Zero-code instrumentation of Hugging Face transformers' ``generate()``.

    opentelemetry-instrument python app.py        # the entry point ``transformers``
    TransformersInstrumentor().instrument()       # or after ferrum_otel.configure()

Every ``GenerationMixin.generate`` call (direct, through ``pipeline(...)``, with or without a
streamer; greedy, sampling, beam search; batched) becomes one request, exactly as
``ferrum_otel.request()`` makes it: the request span with prefill (to the first new token)
and decode children, TTFT, TPOT, inter-token latency and the GenAI metrics.

The per-step hook is a stopping criterion that only reads the clock and appends (on a CUDA
device, records an event: see ``_StepTimes``): generate()
calls the stopping criteria once per step, right after the step's tokens are chosen, in
every decoding strategy, and a criterion sees nothing it must copy (a logits processor runs
before the token exists; a streamer wrapper would move tokens to the CPU and is not called in
beam search).  Which tokens each step produced is read once, from the returned sequences.

Rules:
- one request per generate() call; a batch of n prompts is one request with
  ``ferrum.request.batch_size`` n, its input tokens those of every prompt (padding left out)
  and its output tokens those every sequence generated up to and including its end-of-sequence
  token: a sequence that ended early stops counting.  A step's timestamp counts as many
  tokens as sequences were still generating at that step.
- beam search: the output tokens of the returned sequence(s), timed by the steps they took.
- inside an ``@instrument``-ed function or a ``request()``, generate() records its tokens into
  that request instead of making a second one.
- an exception inside generate() is recorded on the request and re-raised unchanged.
"""

from __future__ import annotations

from collections.abc import Collection
from time import perf_counter_ns
from typing import Any

try:
    # opentelemetry-instrumentation ships no type information (no py.typed marker).
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError(
        "ferrum_otel.instrumentation.transformers needs opentelemetry-instrumentation: "
        "pip install 'ferrum-otel[instrument]'"
    ) from e

from .. import semconv as s
from .._log import log_failure
from .._runtime import active
from ..tracing._request import current_request, request

__all__ = ["TransformersInstrumentor"]

#: The transformers releases whose generate() calls its stopping criteria once per step, as
#: the hook needs (the tests run on the release the test command installs, 5.24 today).
SUPPORTED = ("transformers >= 4.40, < 6",)


class _StepTimes:
    """A stopping criterion that never stops anything: it notes when each step's tokens exist.

    On the CPU that is when generate() calls it.  On a CUDA device the host runs ahead of the
    GPU (transformers defers its stop checks so as never to wait), so a clock read would time
    when a step was queued, not when its token existed: there each step records a CUDA event
    instead (no synchronisation), and the events become host times once generate() is done."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self._append = self.times.append
        self._no: Any = None
        self._events: list[Any] | None = None
        self._anchor: tuple[int, Any] | None = None

    def start(self, inputs: Any) -> None:
        """Called before generate(): on a CUDA device, an event the steps are timed against."""
        device = getattr(inputs, "device", None)
        if getattr(device, "type", None) != "cuda":
            return
        import torch

        torch.cuda.synchronize(device)  # once per call: the anchor's host and device times agree
        anchor = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        anchor.record()
        self._anchor = (perf_counter_ns(), anchor)
        self._events = []

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        events = self._events
        if events is None:
            self._append(perf_counter_ns())  # the hot path: a clock read and an append
        else:
            import torch

            event = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            event.record()
            events.append(event)
        no = self._no
        if no is None or no.shape[0] != input_ids.shape[0]:
            import torch

            no = self._no = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return no

    def resolve(self) -> list[int]:
        """The steps' times in perf_counter_ns (CUDA events read once generate() is done)."""
        if self._events is not None and self._anchor is not None and self._events:
            host0, anchor = self._anchor
            self._events[-1].synchronize()
            self.times[:] = [host0 + int(anchor.elapsed_time(e) * 1e6) for e in self._events]
            self._events = []
        return self.times


def _criterion_type() -> type:
    from transformers import StoppingCriteria

    class StepTimes(_StepTimes, StoppingCriteria):
        pass

    return StepTimes


class TransformersInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Wraps ``transformers.GenerationMixin.generate``; ``uninstrument()`` restores it exactly."""

    _original: Any = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return SUPPORTED

    def _instrument(self, **kwargs: Any) -> None:
        from transformers.generation.utils import GenerationMixin

        original = GenerationMixin.__dict__["generate"]
        if getattr(original, "__ferrum_otel_wrapped__", None) is not None:
            return  # already ours
        step_times = _criterion_type()

        def generate(model: Any, *args: Any, **gen_kwargs: Any) -> Any:
            if active() is None:
                return original(model, *args, **gen_kwargs)
            return _traced_generate(original, step_times, model, args, gen_kwargs)

        generate.__ferrum_otel_wrapped__ = original  # type: ignore[attr-defined]
        generate.__wrapped__ = original  # type: ignore[attr-defined]
        generate.__doc__ = original.__doc__
        generate.__name__ = original.__name__
        generate.__qualname__ = original.__qualname__
        type(self)._original = original
        GenerationMixin.generate = generate  # type: ignore[method-assign]

    def _uninstrument(self, **kwargs: Any) -> None:
        from transformers.generation.utils import GenerationMixin

        original = type(self)._original
        if original is not None:
            GenerationMixin.generate = original  # type: ignore[method-assign]
            type(self)._original = None


def _traced_generate(original: Any, step_times: type, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        timer = step_times()
        kwargs = _with_criterion(kwargs, timer)
        inputs = args[0] if args else kwargs.get("input_ids", kwargs.get("inputs"))
        settings = _settings(model, kwargs)
        n_in, batch = _input_tokens(inputs, kwargs.get("attention_mask"))
    except Exception:  # noqa: BLE001 - instrumentation never breaks inference code
        log_failure("preparing to trace generate()")
        return original(model, *args, **kwargs)
    enclosing = current_request()
    if enclosing is not None:
        marked_before = enclosing.output_tokens
        timer.start(inputs)
        output = original(model, *args, **kwargs)
        if enclosing.output_tokens == marked_before:  # the caller did not mark them itself
            _record_tokens(enclosing, timer.resolve(), output, inputs, settings, in_enclosing=True)
        return output
    attributes: dict[str, Any] = {} if batch is None else {s.FERRUM_REQUEST_BATCH_SIZE: batch}
    if settings["num_beams"] > 1:
        attributes[s.FERRUM_REQUEST_NUM_BEAMS] = settings["num_beams"]
    with request(
        model=_model_name(model),
        input_tokens=n_in,
        max_tokens=settings["max_tokens"],
        temperature=settings["temperature"],
        top_p=settings["top_p"],
        top_k=settings["top_k"],
        stream=settings["stream"],
        attributes=attributes,
    ) as req:
        timer.start(inputs)
        output = original(model, *args, **kwargs)
        _record_tokens(req, timer.resolve(), output, inputs, settings)
    return output


def _with_criterion(kwargs: dict[str, Any], timer: Any) -> dict[str, Any]:
    """The caller's keyword arguments with our criterion added to theirs (theirs untouched)."""
    from transformers import StoppingCriteriaList

    theirs = kwargs.get("stopping_criteria")
    merged = StoppingCriteriaList([*(theirs or ()), timer])
    return {**kwargs, "stopping_criteria": merged}


def _settings(model: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What this call asked for: its generation config, overridden by its keyword arguments."""
    config = kwargs.get("generation_config") or getattr(model, "generation_config", None)

    def get(name: str) -> Any:
        if name in kwargs and kwargs[name] is not None:
            return kwargs[name]
        return getattr(config, name, None)

    sampling = bool(get("do_sample"))
    max_tokens = get("max_new_tokens")
    return {
        "max_tokens": max_tokens if isinstance(max_tokens, int) and max_tokens >= 0 else None,
        "temperature": _float(get("temperature")) if sampling else None,
        "top_p": _float(get("top_p")) if sampling else None,
        "top_k": _float(get("top_k")) if sampling else None,
        "num_beams": get("num_beams") or 1,
        "stream": kwargs.get("streamer") is not None,
        "encoder_decoder": bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False)),
        "eos": _ids(get("eos_token_id")),
        "pad": get("pad_token_id"),
    }


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _ids(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    try:
        return {int(v) for v in (value.tolist() if hasattr(value, "tolist") else value)}
    except (TypeError, ValueError):
        return set()


def _model_name(model: Any) -> str | None:
    config = getattr(model, "config", None)
    name = getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None)
    if isinstance(name, str) and name:
        return name
    kind = getattr(config, "model_type", None)
    return kind if isinstance(kind, str) and kind else None


def _input_tokens(inputs: Any, attention_mask: Any) -> tuple[int | None, int | None]:
    """Prompt tokens over the batch (padding left out where a mask says which), and the batch
    size; both None when the call gave no token ids (``inputs_embeds``): unknown, not guessed."""
    shape = getattr(inputs, "shape", None)
    if shape is None or len(shape) != 2:
        return None, None
    batch = int(shape[0])
    if attention_mask is not None and getattr(attention_mask, "shape", None) == shape:
        return int(attention_mask.sum().item()), batch
    return int(shape[0] * shape[1]), batch


def _generated_lengths(output: Any, prompt_len: int, eos: set[int], pad: Any) -> list[int]:
    """Tokens each returned sequence generated, up to and including its end-of-sequence token."""
    sequences = getattr(output, "sequences", output)
    rows = sequences[:, prompt_len:].tolist()
    lengths = []
    for row in rows:
        n = len(row)
        for i, token in enumerate(row):
            if token in eos:
                n = i + 1
                break
        else:
            if pad is not None and pad not in eos:
                while n and row[n - 1] == pad:
                    n -= 1
        lengths.append(n)
    return lengths


def _record_tokens(
    tracker: Any,
    times: list[int],
    output: Any,
    inputs: Any,
    settings: dict[str, Any],
    *,
    in_enclosing: bool = False,
) -> None:
    """Give the tracker one timestamp per step, counting the sequences still generating then."""
    try:
        shape = getattr(inputs, "shape", None)
        prompt_len = int(shape[1]) if shape is not None and len(shape) == 2 else 0
        if settings["encoder_decoder"]:
            prompt_len = 1  # the decoder's sequences start with its start token, not the prompt
        lengths = _generated_lengths(output, prompt_len, settings["eos"], settings["pad"])
        steps = min(len(times), max(lengths, default=0))
        for k in range(steps):
            n = sum(1 for length in lengths if length > k)
            tracker._token_at(times[k], n)
        if in_enclosing and tracker.input_tokens is None:
            n_in, _batch = _input_tokens(inputs, None)
            if n_in is not None:
                tracker.set_input_tokens(n_in)
    except Exception:  # noqa: BLE001 - instrumentation never breaks inference code
        log_failure("recording generate()'s tokens")
