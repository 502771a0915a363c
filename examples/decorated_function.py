"""The plainest use: decorate an inference function, call it, look at what was recorded.

    python examples/decorated_function.py [OUTPUT_DIR]

With no OTEL_EXPORTER_OTLP_ENDPOINT set, the telemetry goes to OTLP JSON lines in
OUTPUT_DIR (default ./ferrum-otel-telemetry); with it set, to that collector.
"""

from __future__ import annotations

import sys
import time

import ferrum_otel


@ferrum_otel.instrument(model="tiny-llm", input_tokens=lambda prompt, **_: len(prompt.split()), max_tokens=8)
def generate(prompt: str, max_tokens: int = 8) -> str:
    """A stand-in for a model: "decodes" one word at a time and marks each token."""
    req = ferrum_otel.current_request()
    words = []
    time.sleep(0.01)  # prefill
    for i in range(max_tokens):
        time.sleep(0.002)  # one decode step
        words.append(f"word{i}")
        req.token()
    return " ".join(words)


def main() -> None:
    output = sys.argv[1] if len(sys.argv) > 1 else None
    telemetry = ferrum_otel.configure(service_name="decorated-example", output=output, console=False)
    for prompt in ("tell me about rust", "and about python please"):
        print(generate(prompt))
    telemetry.shutdown()
    print("telemetry went to", "; ".join(telemetry.destinations))


if __name__ == "__main__":
    main()
