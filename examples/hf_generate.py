"""A real Hugging Face ``generate()`` traced with prefill and decode spans and per-token timing.

    pip install 'ferrum-otel[hf]'           # transformers and torch
    python examples/hf_generate.py [OUTPUT_DIR]

The model is a small, randomly initialised Llama made from a config, so nothing is
downloaded; the timing is real.  A streamer marks each generated token: the first one ends
prefill, and decode runs to the last.  On a GPU that reports energy, it also prints the
request's joules per output token (on the CPU there is none to report).
"""

from __future__ import annotations

import sys
import time

import ferrum_otel

try:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.generation.streamers import BaseStreamer
except ImportError as e:
    raise SystemExit(f"this example needs transformers and torch: pip install 'ferrum-otel[hf]' ({e})") from None


class TokenTimer(BaseStreamer):
    """generate() hands the prompt to put() once, then each new token: mark every token."""

    def __init__(self, request) -> None:
        self.request = request
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.request.token(int(value.numel()))

    def end(self) -> None:
        pass


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


def generate(model: LlamaForCausalLM, prompt_ids: torch.Tensor, new_tokens: int) -> tuple[torch.Tensor, object]:
    with (
        ferrum_otel.request(
            model="tiny-llama-random",
            input_tokens=prompt_ids.shape[1],
            max_tokens=new_tokens,
            temperature=1.0,
            stream=False,
        ) as req,
        torch.inference_mode(),
    ):
        output = model.generate(
            prompt_ids,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            streamer=TokenTimer(req),
            pad_token_id=0,
        )
    print(
        f"generated {req.metrics.output_tokens} tokens: prefill {req.metrics.prefill_time_ms} ms, "
        f"decode {req.metrics.decode_time_ms} ms, phases {sorted(req.phases)}"
    )
    return output, req


def report_energy(telemetry: ferrum_otel.Telemetry, req) -> None:  # noqa: ANN001
    """The request's energy, known once the sampling interval it ended in has closed."""
    telemetry.force_flush()
    if req.energy is None:
        print("energy: unknown (no GPU here reports energy or power)")
    else:
        print(f"energy: {req.energy:.2f} J, {req.energy / max(req.output_tokens, 1):.4f} J per output token")


def main() -> None:
    output = sys.argv[1] if len(sys.argv) > 1 else None
    telemetry = ferrum_otel.configure(service_name="hf-generate-example", output=output, console=False)
    model = tiny_llama()
    prompt = torch.randint(1, 512, (1, 24))
    started = time.perf_counter()
    out, req = generate(model, prompt, new_tokens=16)
    print(f"output shape {tuple(out.shape)} in {time.perf_counter() - started:.2f} s")
    report_energy(telemetry, req)
    telemetry.shutdown()
    print("telemetry went to", "; ".join(telemetry.destinations))


if __name__ == "__main__":
    main()
