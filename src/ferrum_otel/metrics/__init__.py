"""Metric instruments: every one made in ``_instruments`` from its ``semconv.Instrument``;
the request instruments, and the observable groups for GPUs (``gpu``, over the NVML sampler
in ``_nvml``), PyTorch's allocator (``memory``), the engine's state (``engine``), and the
process and system metrics of the kept library (``system``)."""
