"""Metric instruments: the per-request ones, and (later) GPU, memory and engine gauges."""
