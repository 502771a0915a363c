"""Real backends for end-to-end tests: rotel (OTLP collector), Arize Phoenix (trace store)
and Prometheus.  Each binds 127.0.0.1 on free ports, is waited for with a deadline, and is
stopped by its PID.  ``./scripts/test`` installs all three; elsewhere a missing one skips
its tests unless FERRUM_OTEL_REQUIRE_BACKENDS=1 makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def unavailable(what: str) -> None:
    import pytest  # here, so that benchmarks can start the backends on a plain install

    if os.environ.get("FERRUM_OTEL_REQUIRE_BACKENDS") == "1":
        pytest.fail(f"{what} (FERRUM_OTEL_REQUIRE_BACKENDS=1: ./scripts/test installs it)")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    check: Callable[[], Any], what: str, deadline_s: float = 60.0, proc: subprocess.Popen | None = None
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        try:
            value = check()
        except (OSError, urllib.error.URLError, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - 127.0.0.1 only
        return r.read()


class Process:
    """A server started for a test, stopped by its PID."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pid = self.proc.pid

    def output(self) -> str:
        self._out.flush()
        return ANSI.sub("", self.log.read_text(errors="replace"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._out.close()

    def kill(self) -> None:
        """Stop it hard, as a crash would."""
        os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(10)


def rotel_binary() -> str:
    try:
        import rotel
    except ImportError:
        unavailable("rotel is not installed (pip install rotel)")
    path = Path(rotel.__file__).parent / "rotel-agent"
    if not path.exists():
        unavailable(f"rotel's binary is missing at {path}")
    return str(path)


class Rotel(Process):
    """rotel receiving OTLP on gRPC and HTTP; by default it prints everything it received."""

    def __init__(
        self,
        tmp: Path,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        exporter_args: list[str] | None = None,
        verbosity: str = "detailed",
    ) -> None:
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        args = [
            rotel_binary(),
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.http_port}",
            "--pid-file",
            str(tmp / f"rotel-{self.grpc_port}.pid"),
            "--log-file",
            str(tmp / "rotel-agent.log"),
        ]
        args += exporter_args or [
            "--exporter",
            "blackhole",
            "--debug-log",
            "traces",
            "--debug-log",
            "metrics",
            "--debug-log-verbosity",
            verbosity,
        ]
        super().__init__(args, tmp / f"rotel-{self.grpc_port}.out")
        wait_for(lambda: port_open(self.grpc_port) and port_open(self.http_port), "rotel to listen", 30, self.proc)

    @property
    def grpc(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def parse_rotel(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Spans and metrics from rotel's detailed debug log (the Collector's debug format)."""
    spans: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    span: dict[str, Any] | None = None
    metric: dict[str, Any] | None = None
    point: dict[str, Any] | None = None
    section = None
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if re.match(r"^Span #\d+", line):
            span, metric, section = {"attributes": {}, "events": []}, None, "span"
            spans.append(span)
            continue
        if re.match(r"^Metric #\d+", line):
            metric, span, point, section = {"points": []}, None, None, "metric"
            metrics.append(metric)
            continue
        if line.startswith(("ResourceSpans", "ResourceMetrics", "ScopeSpans", "ScopeMetrics")):
            span = metric = point = None
            section = None
            continue
        if section == "span" and span is not None:
            m = re.match(r"^\s*(Trace ID|Parent ID|ID|Name|Kind)\s*:\s*(.*)$", line)
            if m:
                span[m.group(1)] = m.group(2).strip()
            elif stripped.startswith("Start time:"):
                span["start"] = int(stripped.split(":", 1)[1])
            elif stripped.startswith("End time:"):
                span["end"] = int(stripped.split(":", 1)[1])
            elif stripped.startswith("Status code"):
                span["status"] = stripped.split(":", 1)[1].strip()
            elif stripped.startswith("-> ") and "Name:" not in stripped:
                key, _, value = stripped[3:].partition(": ")
                span["attributes"][key] = value
        elif section == "metric" and metric is not None:
            if stripped.startswith("-> Name:") and point is None:
                metric["name"] = stripped.split(":", 1)[1].strip()
            elif stripped.startswith("-> Unit:"):
                metric["unit"] = stripped.split(":", 1)[1].strip()
            elif stripped.startswith("-> DataType:"):
                metric["type"] = stripped.split(":", 1)[1].strip()
            elif re.match(r"^(NumberDataPoints|HistogramDataPoints) #\d+", stripped):
                point = {"attributes": {}, "bounds": [], "buckets": []}
                metric["points"].append(point)
            elif point is not None:
                if stripped.startswith("-> "):
                    key, _, value = stripped[3:].partition(": ")
                    point["attributes"][key] = value
                elif stripped.startswith("ExplicitBounds #"):
                    point["bounds"].append(float(stripped.split(":", 1)[1]))
                elif stripped.startswith("Buckets #"):
                    point["buckets"].append(int(stripped.rsplit(":", 1)[1]))
                elif stripped.startswith(("Count:", "Sum:", "Value:")):
                    k, _, v = stripped.partition(":")
                    point[k.lower()] = float(v)
    return spans, metrics


def phoenix_binary() -> str:
    venv = Path(os.environ.get("FERRUM_OTEL_PHOENIX_VENV", REPO / ".venv-phoenix"))
    path = venv / "bin" / "phoenix"
    if not path.exists():
        found = shutil.which("phoenix")
        if found is None:
            unavailable(f"Arize Phoenix is not installed (looked in {venv}; ./scripts/test makes that venv)")
        return found
    return str(path)


class Phoenix(Process):
    """Arize Phoenix: OTLP gRPC in, spans out through its REST API."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.grpc_port = free_port(), free_port()
        work = tmp / "phoenix"
        work.mkdir()
        env = {
            **os.environ,
            "PHOENIX_WORKING_DIR": str(work),
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        super().__init__([phoenix_binary(), "serve"], tmp / "phoenix.out", env)
        wait_for(
            lambda: http_get(f"http://127.0.0.1:{self.port}/healthz", 2) is not None and port_open(self.grpc_port),
            "Phoenix to be ready",
            180,
            self.proc,
        )

    def spans(self, project: str = "default") -> list[dict[str, Any]]:
        out, cursor = [], None
        while True:
            query = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            url = f"http://127.0.0.1:{self.port}/v1/projects/{project}/spans?{urllib.parse.urlencode(query)}"
            page = json.loads(http_get(url))
            out += page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                return out


class Prometheus(Process):
    """Debian's Prometheus scraping one target every second."""

    def __init__(
        self, tmp: Path, target: str, *, features: Sequence[str] = (), rule_files: Sequence[Path] = ()
    ) -> None:
        binary = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
        if binary is None:
            unavailable("prometheus is not installed (apt-get install prometheus)")
        self.port = free_port()
        config = tmp / "prometheus.yml"
        rules = "".join(f"  - {p}\n" for p in rule_files)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + "scrape_configs:\n  - job_name: ferrum\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        args = [
            binary,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--storage.tsdb.path={tmp / 'prometheus-data'}",
            *(f"--enable-feature={f}" for f in features),
        ]
        super().__init__(args, tmp / "prometheus.out")
        wait_for(lambda: http_get(f"http://127.0.0.1:{self.port}/-/ready", 2), "Prometheus to be ready", 60, self.proc)

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=promql)["result"]
        return result

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; the ``data`` of a successful answer."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
        doc = json.loads(http_get(url))
        assert doc["status"] == "success", doc
        return doc["data"]


def python() -> str:
    return sys.executable
