#!/usr/bin/env python3
"""ferrum-otel's GPU readings beside nvidia-smi's, idle and under a matmul load.

    python scripts/gpu_check.py [--seconds 5] [--device 0]

For a machine with an NVIDIA GPU: it reads the sampler (through the real nvidia-ml-py) and
``nvidia-smi --query-gpu`` at almost the same instant, first idle, then while a bf16
matmul loop runs on the GPU (with torch, if installed), and prints both readings and their
differences.  Then (with torch and transformers) the energy check: a randomly initialised
TinyLlama-shaped model (1.1B parameters, bf16, nothing downloaded) generates on the GPU for
``--energy-seconds`` through ``ferrum_otel.request()`` with energy on; it prints the joules
per output token and checks that the energy attributed to requests plus idle energy equals
NVML's own counter delta over the same run within 1 %.  Without a GPU it says why in one
sentence and exits 0.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ferrum_otel.metrics._nvml import EMPTY_READING, GpuReading, GpuSampler  # noqa: E402

SMI_FIELDS = [
    "utilization.gpu",
    "memory.used",
    "memory.total",
    "power.draw",
    "temperature.gpu",
    "clocks.sm",
    "clocks.mem",
]
# (label, how ours is read from a fast reading, the smi field, ours converted to smi's unit)
ROWS = [
    ("utilization %", "util_gpu", "utilization.gpu", lambda v: v * 100),
    ("memory used MiB", "mem_used", "memory.used", lambda v: v / 2**20),
    ("memory total MiB", "mem_total", "memory.total", lambda v: v / 2**20),
    ("power W", "power_w", "power.draw", lambda v: v),
    ("temperature C", "temperature_c", "temperature.gpu", lambda v: v),
    ("SM clock MHz", "clock_sm_hz", "clocks.sm", lambda v: v / 1e6),
    ("memory clock MHz", "clock_memory_hz", "clocks.mem", lambda v: v / 1e6),
]


def smi(device: int) -> dict[str, float]:
    out = subprocess.run(
        ["nvidia-smi", f"--id={device}", f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    return {k: float(v) for k, v in zip(SMI_FIELDS, (x.strip() for x in out.split(",")))}


def table(phase: str, ours: GpuReading, theirs: dict) -> list[str]:
    lines = [f"\n{phase}", f"{'reading':<20}{'ferrum-otel':>14}{'nvidia-smi':>14}{'difference':>14}"]
    for label, key, field, conv in ROWS:
        value = getattr(ours, key)
        if value is None:
            lines.append(f"{label:<20}{'(n/a)':>14}{theirs[field]:>14.2f}{'':>14}")
            continue
        mine = conv(value)
        lines.append(f"{label:<20}{mine:>14.2f}{theirs[field]:>14.2f}{mine - theirs[field]:>+14.2f}")
    return lines


def load(stop: threading.Event, device: int) -> str:
    try:
        import torch
    except ImportError:
        return "no torch: the load phase is skipped"
    a = torch.randn(8192, 8192, device=f"cuda:{device}", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=f"cuda:{device}", dtype=torch.bfloat16)
    while not stop.is_set():
        for _ in range(10):
            a @ b
        torch.cuda.synchronize(device)
    return "bf16 matmul 8192x8192"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the load runs before reading")
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument(
        "--energy-seconds", type=float, default=10.0, help="how long the energy check generates (0: skip it)"
    )
    args = parser.parse_args()
    if shutil.which("nvidia-smi") is None:
        print("No GPU check: nvidia-smi is not on this machine.")
        return 0
    sampler = GpuSampler(devices=[args.device], slow_interval_s=1.0)
    if not sampler.available:
        print(f"No GPU check: {sampler.unavailable_reason}.")
        return 0
    d = sampler.devices[0]
    print(f"GPU {d.index}: {d.name} {d.uuid}, driver {sampler.driver_version}")
    lines = []
    sampler.expire()
    lines += table("idle", sampler.readings()[0], smi(args.device))

    stop = threading.Event()
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(load(stop, args.device)), daemon=True)
    worker.start()
    time.sleep(args.seconds)
    sampler.expire()
    ours, theirs = sampler.readings()[0], smi(args.device)
    stop.set()
    worker.join(timeout=30)
    lines += table(f"under load ({result[0] if result else 'load running'})", ours, theirs)
    slow = sampler.slow_readings().get(0, EMPTY_READING)
    nan = float("nan")
    lines.append(
        f"\nslow cadence: energy {slow.energy_j if slow.energy_j is not None else nan:.1f} J, "
        f"PCIe tx {(slow.pcie_tx_Bps if slow.pcie_tx_Bps is not None else nan) / 1e6:.1f} MB/s, "
        f"rx {(slow.pcie_rx_Bps if slow.pcie_rx_Bps is not None else nan) / 1e6:.1f} MB/s"
    )
    lines.append(f"unsupported on this GPU: {', '.join(sorted(d.unsupported)) or 'nothing'}")
    print("\n".join(lines))
    sampler.close()
    if args.energy_seconds > 0:
        return energy_check(args.device, args.energy_seconds)
    return 0


def energy_check(device: int, seconds: float) -> int:
    """Requests generating on the GPU for ``seconds``: J per output token, and attributed +
    idle against NVML's counter delta read directly around the run."""
    try:
        import pynvml
        import torch
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from transformers import LlamaConfig, LlamaForCausalLM
        from transformers.generation.streamers import BaseStreamer
    except ImportError as e:
        print(f"\nNo energy check: {e}.")
        return 0
    import ferrum_otel

    class Tokens(BaseStreamer):
        def __init__(self, req) -> None:  # noqa: ANN001
            self.req, self.prompt_seen = req, False

        def put(self, value) -> None:  # noqa: ANN001
            if self.prompt_seen:
                self.req.token(int(value.numel()))
            self.prompt_seen = True

        def end(self) -> None:
            pass

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
    )
    model = LlamaForCausalLM(config).to(device=f"cuda:{device}", dtype=torch.bfloat16).eval()
    nvml_handle = pynvml.nvmlDeviceGetHandleByIndex(device)
    telemetry = ferrum_otel.configure(
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
        energy=True,
        energy_devices=[device],
    )
    meter = telemetry.runtime.energy if telemetry.runtime is not None else None
    if meter is None:
        print("\nNo energy check: this GPU reports neither energy nor power.")
        telemetry.shutdown()
        return 1
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(nvml_handle) / 1000.0
    requests = []
    started = time.monotonic()
    with torch.inference_mode():
        while time.monotonic() - started < seconds:
            prompt = torch.randint(1, 32000, (1, 256), device=f"cuda:{device}")
            with ferrum_otel.request(model="tinyllama-shaped-random", input_tokens=256) as req:
                model.generate(prompt, max_new_tokens=128, min_new_tokens=128, do_sample=False, streamer=Tokens(req))
            requests.append(req)
    meter.flush(2.0)
    measured, attributed, idle, dropped = meter.totals()
    telemetry.shutdown()
    e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(nvml_handle) / 1000.0
    known = [r for r in requests if r.energy is not None]
    joules = sum(r.energy for r in known)
    tokens = sum(r.output_tokens for r in known)
    nvml_delta = e1 - e0
    gap = abs(attributed + idle - nvml_delta) / nvml_delta if nvml_delta else float("nan")
    print(
        f"\nenergy: {len(requests)} requests of 256 + 128 tokens in {time.monotonic() - started:.1f} s, "
        f"{len(known)} with their energy known; {joules / max(tokens, 1):.4f} J per output token"
        f"\n  attributed {attributed:.1f} J + idle {idle:.1f} J = {attributed + idle:.1f} J; NVML delta "
        f"{nvml_delta:.1f} J read around the run ({100 * gap:.2f} % apart, {dropped} intervals dropped)"
        f"\n  the meter's own intervals hold {measured:.1f} J; source {sorted(set(meter.sources.values()))}"
    )
    ok = gap <= 0.01
    print("energy check: " + ("PASS" if ok else "FAIL (over 1 %)"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
