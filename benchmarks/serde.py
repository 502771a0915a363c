"""loads + dumps of the engine's largest documents, as a ratio to json.loads + json.dumps
of the same text measured in the same run.  Target: at most 10x.

    python benchmarks/serde.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import compare  # noqa: E402

import ferrum_otel.schema as schema  # noqa: E402
from ferrum_otel.serde import dumps, loads  # noqa: E402

SHARED = Path(os.environ.get("FERRUM_OTEL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
TARGET = 10.0


def main() -> int:
    worst = 0.0
    print(f"{'document':<22}{'json (floor)':>14}{'ferrum serde':>14}{'ratio':>8}   loads / dumps alone")
    for name in ("DiagnosticsReport", "EngineState"):
        text = (SHARED / "fixtures" / "serde" / "valid" / f"{name}.json").read_text()
        cls = getattr(schema, name)
        obj = loads(text, cls)
        t = compare(
            {
                "floor": lambda text=text: json.dumps(json.loads(text)),
                "ours": lambda text=text, cls=cls: dumps(loads(text, cls)),
                "loads": lambda text=text, cls=cls: loads(text, cls),
                "dumps": lambda obj=obj: dumps(obj),
            },
            number=200,
        )
        ratio = t["ours"] / t["floor"]
        worst = max(worst, ratio)
        print(
            f"{name:<22}{t['floor'] / 1e3:>11.1f} us{t['ours'] / 1e3:>11.1f} us{ratio:>7.1f}x"
            f"   {t['loads'] / 1e3:.1f} us / {t['dumps'] / 1e3:.1f} us"
        )
    print(f"worst ratio {worst:.1f}x (target <= {TARGET:.0f}x): {'ok' if worst <= TARGET else 'OVER TARGET'}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
