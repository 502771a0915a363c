"""Every example runs, and writes the telemetry it says it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .backends import unavailable
from .localfiles import run_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name: str, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def _spans(folder: Path) -> list[dict]:
    docs = [json.loads(line) for line in run_file(folder, "traces").read_text().splitlines()]
    return [sp for d in docs for rs in d["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]


def _attr(span: dict, key: str):
    for a in span["attributes"]:
        if a["key"] == key:
            return next(iter(a["value"].values()))
    return None


def test_decorated_function(tmp_path):
    """A plain decorated function: two requests, each a span with prefill and decode children."""
    out = _run("decorated_function.py", str(tmp_path))
    assert out.stdout.count("word7") == 2
    spans = _spans(tmp_path)
    roots = [sp for sp in spans if sp["name"] == "text_completion tiny-llm"]
    assert len(roots) == 2
    assert sorted(_attr(r, "gen_ai.usage.input_tokens") for r in roots) == ["4", "4"]  # int64 is a string in OTLP/JSON
    assert {sp["name"] for sp in spans} == {"text_completion tiny-llm", "prefill", "decode"}


def test_async_streaming_server_joins_the_callers_trace(tmp_path):
    """The async generator streams over HTTP and its span joins the trace of the caller's traceparent."""
    out = _run("async_streaming_server.py", "--show-trace")
    assert "response: Streaming tokens from an async generator." in out.stdout
    assert "joined trace 4bf92f3577b34da6a3ce929d0e0e4736 as a child of 00f067aa0ba902b7" in out.stdout
    _run("async_streaming_server.py", str(tmp_path))
    (root,) = [sp for sp in _spans(tmp_path) if sp["name"] == "text_completion tiny-llm"]
    assert root["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736" and root["parentSpanId"] == "00f067aa0ba902b7"
    assert _attr(root, "gen_ai.usage.output_tokens") == "7"


def test_engine_json(tmp_path):
    """The engine's JSON replays as a request span tree and scheduler metrics."""
    out = _run("engine_json.py", str(tmp_path))
    assert "1532 ms" in out.stdout and "preempted 2x" in out.stdout
    spans = _spans(tmp_path)
    assert {sp["name"] for sp in spans} == {
        "text_completion meta-llama/Llama-3.1-8B-Instruct",
        "queue",
        "prefill",
        "decode",
    }
    metrics = run_file(tmp_path, "metrics").read_text()
    assert "ferrum.scheduler.requests" in metrics and "gen_ai.server.time_to_first_token" in metrics


def test_hf_generate(tmp_path):
    """A real transformers generate() on a tiny random Llama: prefill and decode spans, 16 tokens timed."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        unavailable("transformers and torch are not installed (pip install 'ferrum-otel[hf]')")
    out = _run("hf_generate.py", str(tmp_path))
    assert "generated 16 tokens" in out.stdout and "phases ['decode', 'prefill']" in out.stdout
    assert "energy: unknown (no GPU here reports energy or power)" in out.stdout  # CI has no GPU: no guess
    spans = _spans(tmp_path)
    (root,) = [sp for sp in spans if sp["name"] == "text_completion tiny-llama-random"]
    assert _attr(root, "gen_ai.usage.output_tokens") == "16" and _attr(root, "gen_ai.usage.input_tokens") == "24"
    kids = sorted(
        (sp for sp in spans if sp.get("parentSpanId") == root["spanId"]), key=lambda sp: int(sp["startTimeUnixNano"])
    )
    assert [k["name"] for k in kids] == ["prefill", "decode"]
    assert _attr(kids[1], "ferrum.phase.tokens_processed") == "15"  # the first token ends prefill
