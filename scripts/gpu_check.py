#!/usr/bin/env python3
"""ferrum-otel's GPU readings beside nvidia-smi's, idle and under a matmul load.

    python scripts/gpu_check.py [--seconds 5] [--device 0]

For a machine with an NVIDIA GPU: it reads the sampler (through the real nvidia-ml-py) and
``nvidia-smi --query-gpu`` at almost the same instant, first idle, then while a bf16
matmul loop runs on the GPU (with torch, if installed), and prints both readings and their
differences.  Without a GPU it says why in one sentence and exits 0.
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
