"""Settings refused before anything starts, secrets never printed, convert at any size."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
import threading

import pytest

import ferrum_otel
from ferrum_otel import ConfigurationError
from ferrum_otel._commands import InputError, iter_documents
from ferrum_otel.cli import main
from ferrum_otel.serde import DECODER

from .conftest import FIXTURES
from .localfiles import run_file


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        (
            {},
            {"OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%0D%0AX-Injected: 1"},
            "OTEL_EXPORTER_OTLP_HEADERS: the value of 'api-key' holds a control character",
        ),
        ({}, {"OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%00b"}, "holds a control character"),
        ({"headers": {"api-key": "a\x00b"}}, {}, "headers: the value of 'api-key' holds a control character"),
        ({"endpoint": "http://collector :4318"}, {}, "holds whitespace"),
        ({"endpoint": "http://collector:0"}, {}, "has port 0"),
        ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:0"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({}, {"OTEL_BSP_MAX_QUEUE_SIZE": "abc"}, "OTEL_BSP_MAX_QUEUE_SIZE: 'abc' is not a whole number"),
        ({}, {"OTEL_BSP_EXPORT_TIMEOUT": "-5"}, "OTEL_BSP_EXPORT_TIMEOUT: '-5' must be a finite number"),
        ({}, {"OTEL_BSP_SCHEDULE_DELAY": "nan"}, "OTEL_BSP_SCHEDULE_DELAY"),
        ({}, {"OTEL_BLRP_MAX_QUEUE_SIZE": "-1"}, "OTEL_BLRP_MAX_QUEUE_SIZE"),
        ({}, {"OTEL_EXPORTER_OTLP_TIMEOUT": "inf"}, "OTEL_EXPORTER_OTLP_TIMEOUT: 'inf' must be a positive, finite"),
        ({"timeout": float("inf")}, {}, "timeout: expected a positive number"),
        ({"endpoint": "http://user:pw@collector:4317", "protocol": "grpc"}, {}, "gRPC endpoints take no user"),
    ],
)
def test_settings_refused_before_any_thread_starts(monkeypatch, kwargs, env, message):
    """Each malformed setting raises ConfigurationError naming it, and no exporter thread was started."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ConfigurationError) as err:
        ferrum_otel.configure(gpu=False, memory=False, set_global=False, output=False, **kwargs)
    assert message in str(err.value)
    assert "abc%0D" not in str(err.value) and "pw" not in str(err.value)
    started = {t.name for t in threading.enumerate()} - before
    assert not any(n.startswith(("ferrum-otel", "OtelBatch", "OtelPeriodic")) for n in started), started


SECRET = "s3cr3t-t0ken"


def test_no_secret_in_any_output(monkeypatch, tmp_path, caplog):
    """User-info, query strings and header values never appear in doctor, demo, convert or log output."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer {SECRET},bad")
    out = io.StringIO()
    assert main(["doctor"], out=out) == 1
    assert "entry 2 is not key=value" in out.getvalue()
    env = {
        **_env(),
        "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{SECRET}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://admin:{SECRET}@127.0.0.1:9/?token={SECRET}",
    }
    for key in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.setenv(key, env[key])
    out = io.StringIO()
    main(["doctor"], out=out)
    texts = [out.getvalue()] + [r.getMessage() for r in caplog.records]
    for args, rc in (
        (["demo", "--requests", "4", "--concurrency", "2", "--output", str(tmp_path / "d")], 1),
        (["convert", str(FIXTURES / "serde" / "valid" / "RequestMetrics.json")], 1),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "ferrum_otel", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )
        assert done.returncode == rc, done.stderr[-2000:]
        texts += [done.stdout, done.stderr]
    joined = "\n".join(texts)
    assert SECRET not in joined
    assert "http://***@127.0.0.1:9" in joined and "?***" in joined
    assert joined.count("NOT everything arrived") >= 2  # demo and convert say so (nothing listens on port 9)


def test_query_string_is_never_spliced_into_the_signal_path():
    """A base endpoint with a query keeps the query after the signal path."""
    from ferrum_otel._settings import resolve

    s = resolve(
        service_name=None,
        endpoint="http://h:4318/base?tenant=a",
        protocol=None,
        headers=None,
        resource_attributes=None,
        metric_interval=None,
        timeout=None,
        env={},
    )
    assert s.endpoints["traces"] == "http://h:4318/base/v1/traces?tenant=a"


def test_convert_20000_records_all_arrive_with_a_small_queue(tmp_path):
    """convert waits for room instead of dropping: 20,000 records, a queue of 64, every span delivered,
    and the process's peak RSS stays under 100 MB (Python and the SDK included; ~45 MB measured)."""
    one = json.dumps(json.loads((FIXTURES / "serde" / "valid" / "RequestMetrics.json").read_text()))
    src = tmp_path / "many.jsonl"
    src.write_text((one + "\n") * 20_000)
    env = {"OTEL_BSP_MAX_QUEUE_SIZE": "64", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "32"}
    # VmHWM, not ru_maxrss: Linux carries the forking parent's (pytest's) peak across exec into ru_maxrss.
    script = (
        "import re, sys; from ferrum_otel.cli import main; rc = main(sys.argv[1:]); "
        "print('maxrss_kb', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); "
        "sys.exit(rc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, "convert", str(src), "--output", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**_env(), **env},
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split("maxrss_kb")[1]) < 100 * 1024
    assert "replayed 20000 of 20000 RequestMetrics" in out.stdout and "nothing lost" in out.stdout
    traces = run_file(tmp_path / "o", "traces").read_text()
    assert traces.count('"name":"text_completion meta-llama/Llama-3.1-8B-Instruct"') == 20_000


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def test_convert_refuses_broken_input_in_one_line(tmp_path):
    """A too-deep document and a syntax error: one line naming file, line and reason, exit 2, no traceback."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    broken = tmp_path / "broken.jsonl"
    one = json.dumps(json.loads((FIXTURES / "serde" / "valid" / "RequestMetrics.json").read_text()))
    broken.write_text(f'{one}\n{one}\n{{"request_id": ,}}\n')
    dup = tmp_path / "dup.jsonl"
    dup.write_text(f"{one}\n" + one.replace('{"request_id"', '{"input_tokens": 1, "request_id"') + "\n")
    for path, reason in (
        (deep, "nested too deeply"),
        (broken, "line 3: Expecting value"),
        (dup, "line 2: cannot read RequestMetrics: duplicate field"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "ferrum_otel", "convert", str(path), "--output", str(tmp_path / "o")],
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(),
        )
        assert out.returncode == 2
        assert "Traceback" not in out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert str(path) in line and reason in line, line


class _Generated(io.TextIOBase):
    """A JSON array of ``n`` RequestMetrics, produced as it is read (never all in memory)."""

    def __init__(self, item: str, n: int) -> None:
        self._parts = itertools.chain(["[\n"], (f"{item},\n" for _ in range(n - 1)), [item, "\n]\n"])
        self._buf = ""

    def read(self, size: int = -1) -> str:
        while len(self._buf) < size:
            try:
                self._buf += next(self._parts)
            except StopIteration:
                break
        out, self._buf = self._buf[:size], self._buf[size:]
        return out


def test_reading_a_huge_array_keeps_memory_bounded():
    """~60 MB of RequestMetrics read as a stream: peak memory stays within a few MB of chunks."""
    import tracemalloc

    item = json.dumps(json.loads((FIXTURES / "serde" / "valid" / "RequestMetrics.json").read_text()))
    n = 60_000_000 // len(item)
    tracemalloc.start()
    count = 0
    for _line, value in iter_documents(_Generated(item, n), "generated", DECODER):
        count += 1
        assert value["input_tokens"] > 0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == n
    assert peak < 16 * 2**20, peak


def test_iter_documents_shapes():
    """One document, JSON lines and an array give the same values; errors name the line."""
    docs = [{"a": 1}, {"a": 2}]
    for text in ('{"a": 1}\n{"a": 2}\n', '[{"a": 1},\n {"a": 2}]', " [ ] "):
        got = [v for _l, v in iter_documents(io.StringIO(text), "x")]
        assert got == (docs if "a" in text else [])
    with pytest.raises(InputError, match=r"x, line 2: ',' or ']' expected"):
        list(iter_documents(io.StringIO('[{"a": 1}\n{"a": 2}]'), "x"))
    with pytest.raises(InputError, match="the input is empty"):
        list(iter_documents(io.StringIO("  \n"), "x"))
    with pytest.raises(InputError, match="x, line 2: Expecting value"):
        list(iter_documents(io.StringIO('{"a": 1}\n{"a": 2} x'), "x"))
