#!/usr/bin/env python3
"""Generate ferrum-otel's Grafana dashboard from the names in ``semconv.py``.

    python scripts/dashboards.py            # writes collector-config/grafana/dashboards/ferrum-otel.json
    python scripts/dashboards.py --check    # fails if that file differs, or a query names an unknown metric

Built with Grafana's own Python SDK (``grafana-foundation-sdk``, a dev dependency).  Every
query honours the service (``job``), instance and model variables; the data source is a
variable too (no hard-coded uid); every ratio guards its denominator (``x / (y > 0)``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ferrum_otel import semconv as s  # noqa: E402

OUT = ROOT / "collector-config" / "grafana" / "dashboards" / "ferrum-otel.json"
UID = "ferrum-otel"
#: The TTFT objective the SLO tiles and alerts share: 95 % of requests under 0.5 s (a bucket
#: boundary of the spec's TTFT histogram, so it is counted exactly, not interpolated).
TTFT_SLO_S = 0.5
TTFT_SLO_TARGET = 0.95

# Selectors: every query is filtered by the variables it can honour.
SEL = 'job=~"$job", instance=~"$instance"'
SEL_MODEL = SEL + ', gen_ai_request_model=~"$model"'
WINDOW = "$__rate_interval"


def n(instrument: s.Instrument, suffix: str = "") -> str:
    return s.prometheus_name(instrument) + suffix


def rate(instrument: s.Instrument, suffix: str = "", sel: str = SEL_MODEL, window: str = WINDOW) -> str:
    return f"sum(rate({n(instrument, suffix)}{{{sel}}}[{window}]))"


def quantile(q: float, instrument: s.Instrument) -> str:
    bucket = n(instrument, "_bucket")
    return f"histogram_quantile({q}, sum by (le) (rate({bucket}{{{SEL_MODEL}}}[{WINDOW}])))"


def ratio(numerator: str, denominator: str) -> str:
    return f"({numerator}) / (({denominator}) > 0)"


def build() -> dict:
    try:
        from grafana_foundation_sdk.builders import common, dashboard, heatmap, prometheus, stat, timeseries
        from grafana_foundation_sdk.cog.encoder import JSONEncoder
        from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh
    except ImportError as e:
        raise SystemExit(f"this needs Grafana's SDK: pip install grafana-foundation-sdk ({e})") from None

    ds = DataSourceRef(type_val="prometheus", uid="${datasource}")

    def query(expr: str, legend: str = "__auto", exemplars: bool = False) -> prometheus.Dataquery:
        q = prometheus.Dataquery().expr(expr).legend_format(legend).range().datasource(ds)
        return q.exemplar(True) if exemplars else q

    def series(title: str, unit: str, *targets: prometheus.Dataquery, span: int = 8) -> timeseries.Panel:
        panel = timeseries.Panel().title(title).unit(unit).datasource(ds).height(8).span(span)
        for target in targets:
            panel = panel.with_target(target)
        return panel

    def tile(title: str, unit: str, expr: str, description: str) -> stat.Panel:
        return (
            stat.Panel()
            .title(title)
            .description(description)
            .unit(unit)
            .datasource(ds)
            .height(5)
            .span(6)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            .with_target(query(expr))
        )

    def latency(title: str, instrument: s.Instrument) -> timeseries.Panel:
        return series(
            title,
            "s",
            *(query(quantile(q, instrument), f"p{round(q * 100)}", exemplars=q == 0.99) for q in (0.5, 0.95, 0.99)),
            span=6,
        )

    def distribution(title: str, instrument: s.Instrument) -> heatmap.Panel:
        """A heatmap of the histogram's buckets, exemplars on."""
        bucket = n(instrument, "_bucket")
        return (
            heatmap.Panel()
            .title(title)
            .datasource(ds)
            .height(8)
            .span(12)
            .calculate(False)
            .with_target(
                query(f"sum by (le) (increase({bucket}{{{SEL_MODEL}}}[{WINDOW}]))", "{{le}}", exemplars=True).format(
                    "heatmap"
                )
            )
        )

    def variable(name: str, label: str, expr: str) -> dashboard.QueryVariable:
        return (
            dashboard.QueryVariable(name)
            .label(label)
            .datasource(ds)
            .query(expr)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )

    requests = n(s.SERVER_REQUEST_DURATION, "_count")
    ttft_bucket = n(s.SERVER_TIME_TO_FIRST_TOKEN, "_bucket")
    ttft_count = n(s.SERVER_TIME_TO_FIRST_TOKEN, "_count")
    board = (
        dashboard.Dashboard("ferrum-otel: LLM inference")
        .uid(UID)
        .tags(["ferrum-otel", "llm", "gen_ai"])
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(variable("job", "service", f"label_values({requests}, job)"))
        .with_variable(variable("instance", "instance", f'label_values({requests}{{job=~"$job"}}, instance)'))
        .with_variable(variable("model", "model", f'label_values({requests}{{job=~"$job"}}, gen_ai_request_model)'))
        # ---- traffic: how much, and how much of it fails
        .with_row(dashboard.Row("Traffic"))
        .with_panel(series("Requests per second", "reqps", query(rate(s.REQUESTS_TOTAL), "requests"), span=6))
        .with_panel(
            series(
                "Error ratio",
                "percentunit",
                query(ratio(rate(s.REQUESTS_FAILED), rate(s.REQUESTS_TOTAL)), "failed / all"),
                span=6,
            )
        )
        .with_panel(
            series(
                "Requests in flight",
                "short",
                query(f"sum({n(s.ACTIVE_REQUESTS)}{{{SEL_MODEL}}})", "in flight"),
                span=12,
            )
        )
        .with_panel(
            series(
                "Tokens per second",
                "short",
                query(rate(s.PREFILL_TOKENS_TOTAL), "input (prefilled)"),
                query(rate(s.DECODE_TOKENS_TOTAL), "output (decoded)"),
                span=12,
            )
        )
        # ---- latency: percentiles with exemplars (p99 points link to traces), and heatmaps
        .with_row(dashboard.Row("Latency"))
        .with_panel(latency("Time to first token", s.SERVER_TIME_TO_FIRST_TOKEN))
        .with_panel(latency("Time per output token", s.SERVER_TIME_PER_OUTPUT_TOKEN))
        .with_panel(latency("End to end", s.SERVER_REQUEST_DURATION))
        .with_panel(latency("Queue time", s.QUEUE_DURATION))
        .with_panel(distribution("Time to first token, distribution", s.SERVER_TIME_TO_FIRST_TOKEN))
        .with_panel(distribution("End to end, distribution", s.SERVER_REQUEST_DURATION))
        # ---- engine: where requests wait and why
        .with_row(dashboard.Row("Engine"))
        .with_panel(
            series(
                "Scheduler queues",
                "short",
                query(
                    f"sum by (ferrum_scheduler_state) ({n(s.SCHEDULER_REQUESTS)}{{{SEL}}})",
                    "{{ferrum_scheduler_state}}",
                ),
            )
        )
        .with_panel(series("Running batch (mean size)", "short", query(f"avg({n(s.BATCH_SIZE)}{{{SEL}}})", "batch")))
        .with_panel(
            series(
                "KV cache usage",
                "percentunit",
                query(
                    ratio(
                        f'sum({n(s.KV_CACHE_BLOCKS)}{{{SEL}, ferrum_kv_cache_block_state="used"}})',
                        f"sum({n(s.KV_CACHE_BLOCKS_LIMIT)}{{{SEL}}})",
                    ),
                    "used / all blocks",
                ),
            )
        )
        .with_panel(
            series(
                "Prefix-cache hit ratio",
                "percentunit",
                query(f"avg({n(s.PREFIX_CACHE_HIT_RATE)}{{{SEL}}})", "hit ratio"),
                span=12,
            )
        )
        .with_panel(
            series(
                "Preemptions per request",
                "short",
                query(ratio(rate(s.PREEMPTIONS_TOTAL), rate(s.REQUESTS_TOTAL)), "preemptions / request"),
                span=12,
            )
        )
        # ---- GPU: what the hardware does, and what a token costs in energy
        .with_row(dashboard.Row("GPU"))
        .with_panel(
            series(
                "GPU utilization",
                "percentunit",
                query(f'avg by (hw_id) ({n(s.GPU_UTILIZATION)}{{{SEL}, hw_gpu_task="general"}})', "{{hw_id}}"),
                span=6,
            )
        )
        .with_panel(
            series(
                "GPU memory used",
                "bytes",
                query(f"sum by (hw_id) ({n(s.GPU_MEMORY_USAGE)}{{{SEL}}})", "{{hw_id}}"),
                span=6,
            )
        )
        .with_panel(
            series("GPU power", "watt", query(f"sum by (hw_id) ({n(s.GPU_POWER)}{{{SEL}}})", "{{hw_id}}"), span=6)
        )
        .with_panel(
            series(
                "GPU temperature",
                "celsius",
                query(f"max by (hw_id) ({n(s.GPU_TEMPERATURE)}{{{SEL}}})", "{{hw_id}}"),
                span=6,
            )
        )
        .with_panel(
            series(
                "Energy per output token",
                "J",
                query(ratio(rate(s.REQUEST_ENERGY, "_sum"), rate(s.DECODE_TOKENS_TOTAL)), "J per output token"),
                span=12,
            )
        )
        # ---- SLO tiles: the objectives the alert rules watch
        .with_row(dashboard.Row("SLOs"))
        .with_panel(
            tile(
                f"TTFT under {TTFT_SLO_S} s",
                "percentunit",
                ratio(
                    f'sum(increase({ttft_bucket}{{{SEL_MODEL}, le="{TTFT_SLO_S}"}}[$__range]))',
                    f"sum(increase({ttft_count}{{{SEL_MODEL}}}[$__range]))",
                ),
                f"Share of requests whose first token came within {TTFT_SLO_S} s; objective {TTFT_SLO_TARGET:.0%}.",
            )
        )
        .with_panel(
            tile(
                "Requests that did not fail",
                "percentunit",
                f"1 - {ratio(rate(s.REQUESTS_FAILED, window='$__range'), rate(s.REQUESTS_TOTAL, window='$__range'))}",
                "Share of finished requests that did not fail; objective 99 %.",
            )
        )
        .with_panel(
            tile(
                "p99 time to first token",
                "s",
                f"histogram_quantile(0.99, sum by (le) (rate({ttft_bucket}{{{SEL_MODEL}}}[$__range])))",
                "Over the dashboard's time range.",
            )
        )
        .with_panel(
            tile(
                "Energy per output token",
                "J",
                ratio(
                    rate(s.REQUEST_ENERGY, "_sum", window="$__range"), rate(s.DECODE_TOKENS_TOTAL, window="$__range")
                ),
                "Joules the GPUs spent per output token, attributed per request.",
            )
        )
    )
    encoded = JSONEncoder(sort_keys=True, indent=2).encode(board.build())
    data: dict = json.loads(encoded)
    return data


# ---- checks -------------------------------------------------------------------------------

_FUNCTIONS = {
    "sum", "rate", "increase", "histogram_quantile", "avg", "max", "min", "by", "le", "label_values",
    "irate", "count", "without", "on", "ignoring", "group_left", "bool", "and", "or", "unless",
}  # fmt: skip


def queries(board: dict) -> list[str]:
    out = [
        p["query"] if isinstance(p["query"], str) else p["query"]["query"]
        for p in board["templating"]["list"]
        if p.get("type") == "query"
    ]
    out += [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (what stands before a ``{`` or ``[``)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return {m for m in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", without_strings) if m not in _FUNCTIONS}


def known_names() -> set[str]:
    names = set()
    for ins in s.instruments():
        base = s.prometheus_name(ins)
        names.add(base)
        if ins.kind == "histogram":
            names |= {base + "_bucket", base + "_count", base + "_sum"}
    return names


def unknown_metrics(board: dict) -> list[str]:
    known = known_names()
    return sorted({name for q in queries(board) for name in metric_names(q)} - known)


def render(board: dict) -> str:
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed dashboard is stale or wrong")
    args = parser.parse_args()
    board = build()
    unknown = unknown_metrics(board)
    if unknown:
        print(f"queries name metrics semconv.py does not define: {', '.join(unknown)}", file=sys.stderr)
        return 1
    text = render(board)
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(
                f"{OUT.relative_to(ROOT)} is not what the generator makes: run python scripts/dashboards.py",
                file=sys.stderr,
            )
            return 1
        print(f"{OUT.relative_to(ROOT)}: up to date, {len(queries(board))} queries, every metric defined")
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(board['panels'])} panels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
