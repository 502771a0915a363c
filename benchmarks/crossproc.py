"""What carrying a request across processes costs, per request, in one run.

    python benchmarks/crossproc.py

On an SDK with a simple span processor and a dropping exporter: ``req.carrier()``, a
worker's ``continue_request()`` with one phase and 8 tokens through ``seg.summary()``, and
``req.absorb()``, each against the same run's floor: a whole request with 3 phases and 128
tokens.  No target is set by the issue; the figures are reported.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import compare, configure_dropping  # noqa: E402
from overhead import ours  # noqa: E402

import ferrum_otel  # noqa: E402


def main() -> int:
    telemetry = configure_dropping(gpu=False, memory=False)
    req = ferrum_otel.request(model="m", input_tokens=32)
    carrier = req.carrier()

    def segment() -> dict:
        with ferrum_otel.continue_request(carrier, role="decode-worker") as seg, seg.phase("decode"):
            for _ in range(8):
                seg.token()
        return seg.summary()

    summary = segment()
    target = ferrum_otel.request(model="m")

    def absorb() -> None:
        target.absorb(summary)
        target._absorbed = None  # noqa: SLF001 - keep the bookkeeping from growing between calls

    t = compare({"request": ours, "carrier": req.carrier, "segment": segment, "absorb": absorb}, number=200, rounds=9)
    req.finish()
    target.finish()
    telemetry.shutdown()
    floor = t["request"]
    print(f"a request with 3 phases and 128 tokens: {floor / 1e3:.0f} us (the floor)")
    for name, label in (
        ("carrier", "req.carrier()"),
        ("segment", "continue_request() + a phase + 8 tokens + summary()"),
        ("absorb", "req.absorb(summary)"),
    ):
        print(f"{label:<55}{t[name] / 1e3:7.1f} us  {t[name] / floor:.2f}x the request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
