"""Zero-code instrumentation of transformers' generate(), on tiny random models made here
(nothing downloaded), checked against timings and counts taken independently in the test."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ferrum_otel import semconv as s
from ferrum_otel.testing import capture

from .backends import unavailable

try:
    import torch
    import transformers
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        LogitsProcessor,
        LogitsProcessorList,
        PreTrainedTokenizerFast,
    )
    from transformers.generation.streamers import BaseStreamer
except ImportError:  # pragma: no cover - the test command installs them
    unavailable("transformers and torch are not installed (pip install 'ferrum-otel[hf]')")

from ferrum_otel.instrumentation.transformers import TransformersInstrumentor

VOCAB = 512
EOS = VOCAB - 1


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=EOS,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=256, eos_token_id=EOS, pad_token_id=0
    )
    return GPT2LMHeadModel(config).eval()


def tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i for i in range(2, EOS)}, "[EOS]": EOS}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")


class NoEos(LogitsProcessor):
    """Keeps EOS away, except for the rows and steps in ``eos_at`` ({row: step}) where it is forced.

    It also times the call independently, by order of events rather than by tolerance: it starts
    before generate() is called, notes the first logits, and (given the model) notes each forward
    call.  Ours starts between the test's start and the first forward, and ends at the first
    step's stopping check, between the first logits and the second forward; so
    first logits - first forward <= ours <= second forward - start, however loaded the machine."""

    def __init__(self, prompt_len: int, eos_at: dict[int, int] | None = None, model: torch.nn.Module | None = None):
        self.prompt_len = prompt_len
        self.eos_at = eos_at or {}
        self.forwards: list[float] = []
        if model is not None:
            model.register_forward_pre_hook(lambda module, args: self.forwards.append(time.perf_counter()))
        self.started = time.perf_counter()
        self.first: float | None = None  # the prefill's logits are there

    def ttft_bounds_ms(self) -> tuple[float, float]:
        assert self.first is not None and len(self.forwards) >= 2, "needs the model and two steps"
        return (self.first - self.forwards[0]) * 1e3, (self.forwards[1] - self.started) * 1e3

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.first is None:
            self.first = time.perf_counter()
        step = input_ids.shape[1] - self.prompt_len
        scores[:, EOS] = -float("inf")
        for row, at in self.eos_at.items():
            if step == at:
                scores[row, :] = -float("inf")
                scores[row, EOS] = 0.0
        return scores


class Tokens(BaseStreamer):
    """An independent count of the new tokens generate() hands over."""

    def __init__(self) -> None:
        self.calls = 0
        self.tokens = 0

    def put(self, value: torch.Tensor) -> None:
        self.calls += 1
        if self.calls > 1:  # the first call is the prompt
            self.tokens += int(value.numel())

    def end(self) -> None:
        pass


@pytest.fixture
def instrumented():
    with capture() as cap:
        TransformersInstrumentor().instrument()
        try:
            yield cap
        finally:
            TransformersInstrumentor().uninstrument()


def _request_span(cap, name: str):  # noqa: ANN001, ANN202
    spans = [sp for sp in cap.spans() if sp.name.startswith("text_completion")]
    assert [sp.name for sp in spans] == [name], [sp.name for sp in spans]
    (span,) = spans
    kids = cap.children(span)
    assert [k.name for k in kids] == ["prefill", "decode"]
    assert kids[0].end_time <= kids[1].start_time + 1 and kids[1].end_time <= span.end_time
    return span


def _ttft_agrees(span, clock: NoEos) -> None:  # noqa: ANN001
    low, high = clock.ttft_bounds_ms()
    ours = span.attributes[s.FERRUM_TTFT_MS]
    assert low - 1e-3 <= ours <= high + 1e-3, (low, ours, high)  # 1e-3: the attribute's rounding


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2"])
def test_greedy_generate_makes_one_request_with_its_phases_tokens_and_ttft(instrumented, make):
    model = make()
    prompt = torch.randint(2, EOS, (1, 12))
    streamer = Tokens()
    clock = NoEos(12, model=model)
    out = model.generate(
        prompt, max_new_tokens=10, do_sample=False, streamer=streamer, logits_processor=LogitsProcessorList([clock])
    )
    span = _request_span(instrumented, f"text_completion {model.config.model_type}")
    a = span.attributes
    assert out.shape[1] - 12 == 10 == a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == streamer.tokens
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 12 and a[s.GEN_AI_REQUEST_MAX_TOKENS] == 10
    assert a[s.FERRUM_REQUEST_BATCH_SIZE] == 1 and a[s.GEN_AI_REQUEST_STREAM] is True
    _ttft_agrees(span, clock)
    assert a[s.FERRUM_ITL_MEAN_MS] > 0
    assert instrumented.histogram(s.SERVER_TIME_TO_FIRST_TOKEN.name).count == 1


def test_sampling_records_its_parameters(instrumented):
    model = tiny_llama()
    clock = NoEos(6, model=model)
    model.generate(
        torch.randint(2, EOS, (1, 6)),
        max_new_tokens=5,
        do_sample=True,
        temperature=0.7,
        top_k=20,
        top_p=0.9,
        logits_processor=LogitsProcessorList([clock]),
    )
    span = _request_span(instrumented, "text_completion llama")
    _ttft_agrees(span, clock)
    a = span.attributes
    assert a[s.GEN_AI_REQUEST_TEMPERATURE] == pytest.approx(0.7)
    assert a[s.GEN_AI_REQUEST_TOP_K] == 20 and a[s.GEN_AI_REQUEST_TOP_P] == pytest.approx(0.9)
    assert a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 5


def test_beam_search_counts_the_returned_sequence(instrumented):
    model = tiny_gpt2()
    clock = NoEos(8, model=model)
    out = model.generate(
        torch.randint(2, EOS, (1, 8)),
        max_new_tokens=7,
        num_beams=3,
        do_sample=False,
        logits_processor=LogitsProcessorList([clock]),
    )
    span = _request_span(instrumented, "text_completion gpt2")
    _ttft_agrees(span, clock)
    a = span.attributes
    assert a[s.FERRUM_REQUEST_NUM_BEAMS] == 3
    assert a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == out.shape[1] - 8 == 7


def test_a_batch_is_one_request_and_a_sequence_that_ended_early_stops_counting(instrumented):
    model = tiny_llama()
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12], [13, 14, 15, 16]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])  # left padding
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    clock = NoEos(width, eos_at={1: 2}, model=model)  # row 1: two tokens, then EOS
    out = model.generate(
        ids, attention_mask=mask, max_new_tokens=6, do_sample=False, logits_processor=LogitsProcessorList([clock])
    )
    new = out[:, width:].tolist()
    assert new[1][2] == EOS and EOS not in new[0] + new[2]
    span = _request_span(instrumented, "text_completion llama")
    _ttft_agrees(span, clock)
    a = span.attributes
    assert a[s.FERRUM_REQUEST_BATCH_SIZE] == 3
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 12  # padding left out
    assert a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 6 + 3 + 6  # row 1 counts up to and including its EOS


def test_a_pipeline_call_is_traced(instrumented):
    from transformers import pipeline

    model = tiny_llama()
    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer(), device="cpu")
    clock = NoEos(4, model=model)
    result = pipe("w3 w4 w5 w6", max_new_tokens=4, do_sample=False, logits_processor=LogitsProcessorList([clock]))
    assert result[0]["generated_text"]
    span = _request_span(instrumented, "text_completion llama")
    _ttft_agrees(span, clock)  # the pipeline tokenizes first: between the test's start and ours
    a = span.attributes
    assert a[s.GEN_AI_USAGE_INPUT_TOKENS] == 4 and a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 4


def test_a_text_iterator_streamer_in_a_thread(instrumented):
    from transformers import TextIteratorStreamer

    tok = tokenizer()
    model = tiny_llama()
    streamer = TextIteratorStreamer(tok, skip_prompt=True)
    ids = tok("w3 w4 w5", return_tensors="pt")["input_ids"]
    clock = NoEos(3, model=model)
    worker = threading.Thread(
        target=model.generate,
        kwargs={
            "inputs": ids,
            "max_new_tokens": 6,
            "do_sample": False,
            "streamer": streamer,
            "logits_processor": LogitsProcessorList([clock]),
        },
    )
    worker.start()
    text = "".join(streamer)
    worker.join()
    assert len(text.split()) == 6
    span = _request_span(instrumented, "text_completion llama")
    _ttft_agrees(span, clock)
    a = span.attributes
    assert a[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 6 and a[s.GEN_AI_USAGE_INPUT_TOKENS] == 3


def test_inside_a_request_generate_records_into_it(instrumented):
    import ferrum_otel

    model = tiny_llama()
    with ferrum_otel.request(model="outer", input_tokens=7) as req:
        model.generate(
            torch.randint(2, EOS, (1, 7)), max_new_tokens=5, logits_processor=LogitsProcessorList([NoEos(7)])
        )
    span = _request_span(instrumented, "text_completion outer")
    assert span.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == 5 == req.output_tokens
    assert span.attributes[s.FERRUM_TTFT_MS] > 0


def test_an_exception_inside_generate_is_recorded_and_reraised_unchanged(instrumented):
    class Boom(LogitsProcessor):
        def __call__(self, input_ids, scores):  # noqa: ANN001, ANN204
            raise ValueError("boom")

    model = tiny_llama()
    with pytest.raises(ValueError, match="boom") as raised:
        model.generate(torch.randint(2, EOS, (1, 4)), max_new_tokens=3, logits_processor=LogitsProcessorList([Boom()]))
    (span,) = [sp for sp in instrumented.spans() if sp.name.startswith("text_completion")]
    assert span.status.status_code.name == "ERROR" and span.attributes[s.ERROR_TYPE] == "ValueError"
    assert span.events[-1].attributes["exception.message"] == str(raised.value)


def test_uninstrument_restores_the_original_and_instrumenting_twice_wraps_once():
    from transformers.generation.utils import GenerationMixin

    original = GenerationMixin.__dict__["generate"]
    instrumentor = TransformersInstrumentor()
    with capture() as cap:
        instrumentor.instrument()
        wrapped = GenerationMixin.__dict__["generate"]
        assert wrapped is not original and wrapped.__wrapped__ is original
        instrumentor.instrument()  # a second time: nothing more
        assert GenerationMixin.__dict__["generate"] is wrapped
        tiny_llama().generate(torch.randint(2, EOS, (1, 4)), max_new_tokens=2)
        assert len([sp for sp in cap.spans() if sp.name.startswith("text_completion")]) == 1
        instrumentor.uninstrument()
        assert GenerationMixin.__dict__["generate"] is original
        cap.clear()
        tiny_llama().generate(torch.randint(2, EOS, (1, 4)), max_new_tokens=2)
        assert cap.spans() == []
    assert tuple(instrumentor.instrumentation_dependencies()) == ("transformers >= 4.40, < 6",)
    major = int(transformers.__version__.split(".")[0])
    assert 4 <= major < 6


APP = """
import torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)).eval()
out = model.generate(torch.randint(1, 128, (1, 5)), max_new_tokens=4, min_new_tokens=4, pad_token_id=0)
print("generated", out.shape[1] - 5)
"""


def _instrumented_run(tmp_path: Path, disabled: str = "") -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "OTEL_SERVICE_NAME": "hf-app",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [
            str(bin_dir / "opentelemetry-instrument"),
            "--traces_exporter",
            "console",
            "--metrics_exporter",
            "none",
            "--logs_exporter",
            "none",
            sys.executable,
            str(app),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_opentelemetry_instrument_traces_generate_with_no_code_change(tmp_path):
    out = _instrumented_run(tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "generated 4" in out.stdout
    assert '"name": "text_completion llama"' in out.stdout, out.stdout[-3000:]
    assert '"name": "prefill"' in out.stdout and '"name": "decode"' in out.stdout
    assert '"gen_ai.usage.output_tokens": 4' in out.stdout


def test_the_standard_off_switch_names_the_entry_point(tmp_path):
    out = _instrumented_run(tmp_path, disabled="transformers")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "generated 4" in out.stdout and "text_completion" not in out.stdout


def test_a_call_with_embeddings_only_says_nothing_it_did_not_see(instrumented):
    """inputs_embeds and no token ids: prompt length and batch size are unknown, so absent."""
    model = tiny_llama()
    embeds = model.get_input_embeddings()(torch.randint(2, EOS, (1, 5)))
    out = model.generate(inputs_embeds=embeds, max_new_tokens=3, logits_processor=LogitsProcessorList([NoEos(0)]))
    (span,) = [sp for sp in instrumented.spans() if sp.name.startswith("text_completion")]
    assert s.GEN_AI_USAGE_INPUT_TOKENS not in span.attributes
    assert s.FERRUM_REQUEST_BATCH_SIZE not in span.attributes
    assert span.attributes[s.GEN_AI_USAGE_OUTPUT_TOKENS] == out.shape[1] == 3
