"""The ``ferrum-otel`` command."""

from __future__ import annotations

import argparse
import sys

from ._version import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferrum-otel",
        description="OpenTelemetry for LLM inference: the Ferrum engine and any Python inference loop.",
    )
    parser.add_argument("--version", action="version", version=f"ferrum-otel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("version", help="print the installed version")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command in (None, "version"):
        print(f"ferrum-otel {__version__}")
        return 0
    parser.error(f"unknown command {args.command!r}")  # argparse exits with status 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
