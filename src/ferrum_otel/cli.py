"""The ``ferrum-otel`` command: demo, gpu, doctor, convert, version."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import IO

from ._version import __version__

__all__ = ["main"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferrum-otel",
        description="OpenTelemetry for LLM inference: the Ferrum engine and any Python inference loop.",
    )
    parser.add_argument("--version", action="version", version=f"ferrum-otel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="serve simulated requests through a traced engine and report what was seen",
        description="A simulated continuous-batching engine serves a stream of requests, traced "
        "with ferrum-otel; a report follows.",
    )
    demo.add_argument("--requests", type=_positive, default=48, metavar="N", help="requests to serve (48)")
    demo.add_argument(
        "--concurrency", type=_positive, default=12, metavar="N", help="clients with a request in flight at once (12)"
    )
    demo.add_argument(
        "--max-batch", type=_positive, default=32, metavar="N", help="the most requests the engine runs together (32)"
    )
    demo.add_argument(
        "--kv-blocks", type=_positive, default=300, metavar="N", help="KV cache blocks of 16 tokens (300)"
    )
    demo.add_argument("--seed", type=int, default=7, metavar="N", help="random seed (7)")
    demo.add_argument(
        "--endpoint", metavar="URL", help="ship over OTLP to this collector (http://host:4318) instead of local files"
    )
    demo.add_argument("--output", metavar="DIR", help="folder for the local OTLP JSON files (./ferrum-otel-telemetry)")
    demo.add_argument(
        "--prometheus",
        metavar="HOST:PORT",
        help="also serve the metrics for Prometheus to scrape, exemplars included (127.0.0.1:9464)",
    )
    demo.add_argument(
        "--processes",
        action="store_true",
        help="run the request across five processes: a frontend, two tokenizer workers, a prefill and a decode worker",
    )
    demo.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="S",
        help="keep serving the Prometheus endpoint this many seconds after the report (0)",
    )

    sub.add_parser("gpu", help="show what NVML reports for each GPU, or say why there is nothing")
    sub.add_parser("doctor", help="check the OTEL_* configuration, the endpoint and NVML, and say what to fix")

    convert = sub.add_parser(
        "convert",
        help="replay the Rust engine's JSON as spans and metrics",
        description="Read the Rust engine's JSON (one document, an array, or JSON lines) of a "
        "schema type and replay it as OpenTelemetry spans and metrics.",
    )
    convert.add_argument("file", help="a JSON file, or - for standard input")
    convert.add_argument(
        "--type", dest="type_name", default="RequestMetrics", help="the schema type the JSON holds (RequestMetrics)"
    )
    convert.add_argument("--endpoint", metavar="URL", help="ship over OTLP to this collector instead of local files")
    convert.add_argument("--output", metavar="DIR", help="folder for the local OTLP JSON files")

    sub.add_parser("version", help="print the installed version")
    return parser


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo" and args.processes:
            from ._demo.processes import run_process_demo

            return run_process_demo(
                args.requests, args.concurrency, args.seed, args.endpoint, args.output, out, sys.stderr
            )
        if args.command == "demo":
            from ._demo import run_demo

            return run_demo(
                args.requests,
                args.concurrency,
                args.seed,
                args.endpoint,
                args.output,
                out=out,
                max_batch=args.max_batch,
                kv_blocks=args.kv_blocks,
                prometheus=args.prometheus,
                linger_s=max(0.0, args.linger),
            )
        if args.command == "gpu":
            from ._commands import gpu

            return gpu(out)
        if args.command == "doctor":
            from ._commands import doctor

            return doctor(out)
        if args.command == "convert":
            from ._commands import convert

            return convert(args.file, args.type_name, args.endpoint, args.output, out)
    except Exception as e:
        from ._settings import ConfigurationError

        if isinstance(e, (ConfigurationError, OSError, ValueError)):
            print(f"ferrum-otel {args.command}: {e}", file=sys.stderr)
            return 2
        raise
    if args.command == "version":
        print(f"ferrum-otel {__version__}", file=out)
        return 0
    parser.print_help(out)  # bare `ferrum-otel`: what it can do, not just its version
    return 2


if __name__ == "__main__":
    sys.exit(main())
