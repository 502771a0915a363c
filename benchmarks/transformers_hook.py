"""What the transformers instrumentation costs a generate() call, against the same call
uninstrumented, in one run.

    python benchmarks/transformers_hook.py

A tiny random Llama (CPU) generates 64 tokens greedily; the SDK has a simple span processor
and a dropping exporter.  Reported: the per-step cost of the hook (the stopping criterion
generate() calls once per step) as a share of a decode step, target under 1 %; and the
whole call instrumented against uninstrumented (hook, request span, phases, metrics).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import torch  # noqa: E402
from _bench import configure_dropping, per_call_ns  # noqa: E402
from hf_generate import tiny_llama  # noqa: E402

from ferrum_otel.instrumentation.transformers import TransformersInstrumentor, _criterion_type  # noqa: E402

TOKENS = 64
ROUNDS = 7


def main() -> int:
    model = tiny_llama()  # the example's model
    prompt = torch.randint(1, 512, (1, 16))

    def call() -> None:
        with torch.inference_mode():
            model.generate(prompt, max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False, pad_token_id=0)

    telemetry = configure_dropping(gpu=False, memory=False)
    instrumentor = TransformersInstrumentor()
    call()  # warm up
    best = {False: float("inf"), True: float("inf")}
    for _ in range(ROUNDS):
        for on in (False, True):
            if on:
                instrumentor.instrument()
            t0 = time.perf_counter_ns()
            call()
            best[on] = min(best[on], time.perf_counter_ns() - t0)
            if on:
                instrumentor.uninstrument()
    telemetry.shutdown()

    step_ns = best[False] / TOKENS
    hook = _criterion_type()()
    ids = torch.zeros((1, 80), dtype=torch.long)
    hook_ns = per_call_ns(lambda: hook(ids, None), number=20_000)
    share = hook_ns / step_ns
    print(
        f"per step: the hook costs {hook_ns / 1e3:.2f} us, {100 * share:.3f} % of a decode step of the tiny model "
        f"({step_ns / 1e6:.2f} ms; target under 1 %)" + ("" if share < 0.01 else "   over target")
    )
    print(
        f"per call: generate() of {TOKENS} tokens instrumented {best[True] / best[False]:.3f}x uninstrumented "
        f"({best[True] / 1e6:.1f} ms against {best[False] / 1e6:.1f} ms; "
        f"{(best[True] - best[False]) / 1e3:+.0f} us for the request, its phases and metrics)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
