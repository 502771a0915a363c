"""One collection of every GPU instrument (8 GPUs, fake NVML replaying the H200 at zero
latency), as a ratio to a bare OpenTelemetry collection of the same observable instruments
reporting the same points from constants, measured in the same run.  Target: at most 1.3x.

    python benchmarks/gauges.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import compare  # noqa: E402
from opentelemetry.metrics import Observation  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

from ferrum_otel._fake_nvml import FakeNvml  # noqa: E402
from ferrum_otel.metrics._instruments import make_observable  # noqa: E402
from ferrum_otel.metrics._nvml import GpuSampler  # noqa: E402
from ferrum_otel.metrics.gpu import GpuInstruments  # noqa: E402

SHARED = Path(os.environ.get("FERRUM_OTEL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
GPUS = 8
TARGET = 1.3


def main() -> int:
    probe = json.loads((SHARED / "fixtures" / "nvml" / "h200-probe.json").read_text())
    fake = FakeNvml(probe, gpus=GPUS)
    # Collections wait for the readers here (a production one waits 5 ms), so every one measures the same work.
    sampler = GpuSampler(fake, slow_interval_s=3600, collect_wait_s=5.0)
    ours_reader = InMemoryMetricReader()
    ours_provider = MeterProvider(metric_readers=[ours_reader])
    instruments = GpuInstruments(ours_provider.get_meter("ours"), sampler)
    # Wait until the sampler has found every GPU and read the slow queries once, so the floor
    # copies all instruments (before, a race left it 15, 17 or 18 of them).
    sampler.readings(wait_s=5.0)
    sampler.read_slow()
    assert len(sampler.slow_readings()) == GPUS, "the slow readings are not there"

    # What one collection reports: each instrument's points, to copy into the bare floor.
    snapshot = {
        m.name: [(p.value, dict(p.attributes)) for p in m.data.data_points]
        for rm in ours_reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    bare_reader = InMemoryMetricReader()
    bare_provider = MeterProvider(metric_readers=[bare_reader])
    bare_meter = bare_provider.get_meter("bare")
    from ferrum_otel import semconv

    specs = {i.name: i for i in vars(semconv).values() if isinstance(i, semconv.Instrument)}
    for name, points in snapshot.items():
        frozen = [Observation(v, a) for v, a in points]
        make_observable(bare_meter, specs[name], lambda _o, frozen=frozen: frozen)

    def ours() -> None:
        sampler.expire()  # every collection reads NVML afresh, as a real one 15-60 s apart would
        ours_reader.get_metrics_data()

    def bare() -> None:
        bare_reader.get_metrics_data()

    t = compare({"bare": bare, "ours": ours}, number=50, rounds=21)
    n_points = sum(len(p) for p in snapshot.values())
    ratio = t["ours"] / t["bare"]
    print(f"{len(snapshot)} instruments, {n_points} points, {GPUS} GPUs")
    print(f"bare OTel collection (floor): {t['bare'] / 1e3:.0f} us")
    print(f"ferrum-otel GPU collection:   {t['ours'] / 1e3:.0f} us")
    print(f"ratio {ratio:.2f}x (target <= {TARGET}x): {'ok' if ratio <= TARGET else 'OVER TARGET'}")
    instruments.close()
    sampler.close()
    ours_provider.shutdown()
    bare_provider.shutdown()
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
