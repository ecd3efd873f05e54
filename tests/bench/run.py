"""`make bench`: run every benchmark module and write a results table.

Each `tests/bench/bench_*.py` exposes `run() -> list[Row]`; every figure stands beside
its physical reference measured in the same run (raw SQLite insert rate, the C client
`mosquitto_pub`), so a slow machine cannot make a slow product look fine.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["Row", "main"]


@dataclasses.dataclass(frozen=True)
class Row:
    figure: str  # what was measured, e.g. "POSLog parse+normalise"
    value: float
    unit: str  # e.g. "transactions/s"
    reference: str = ""  # the physical reference, e.g. "raw SQLite insert (same run)"
    reference_value: float | None = None
    target: str = ""  # e.g. ">= 0.3 x reference" or ">= 10000"
    met: bool | None = None  # whether the target was met, when it has one


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else Path("bench-results")
    only = set(argv[2:])
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for module_path in sorted(Path(__file__).parent.glob("bench_*.py")):
        name = module_path.stem
        if only and name not in only:
            continue
        started = time.perf_counter()
        print(f"running {name} ...", flush=True)
        module = importlib.import_module(f"tests.bench.{name}")
        rows.extend(module.run())
        print(f"  done in {time.perf_counter() - started:.1f}s", flush=True)
    lines = [
        f"# Tillbridge benchmarks — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "",
        "| figure | value | unit | reference (same run) | reference value | ratio | target | met |",
        "|---|---:|---|---|---:|---:|---|---|",
    ]
    for row in rows:
        ratio = (
            f"{row.value / row.reference_value:.2f}" if row.reference_value not in (None, 0) else ""
        )
        met = "" if row.met is None else ("yes" if row.met else "NO")
        lines.append(
            f"| {row.figure} | {_fmt(row.value)} | {row.unit} | {row.reference} | "
            f"{_fmt(row.reference_value)} | {ratio} | {row.target} | {met} |"
        )
    table = "\n".join(lines) + "\n"
    (out_dir / "results.md").write_text(table)
    (out_dir / "results.json").write_text(
        json.dumps([dataclasses.asdict(r) for r in rows], indent=2)
    )
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
