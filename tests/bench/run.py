"""`make bench`: run every benchmark module and write a results table.

Each `tests/bench/bench_*.py` exposes `run() -> list[Row]`; every figure stands beside
its physical reference measured in the same run (raw SQLite insert rate, the C client
`mosquitto_pub`), so a slow machine cannot make a slow product look fine.

The table goes to OUT_DIR/results.md and .json; a full run (no module named) also puts
it into BENCHMARKS.md between its `bench:start` and `bench:end` marks, with the machine,
the date and the command that reproduces each row, leaving the notes around it alone.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["Row", "cpu_seconds", "main"]


@dataclasses.dataclass(frozen=True)
class Row:
    figure: str  # what was measured, e.g. "POSLog parse+normalise"
    value: float
    unit: str  # e.g. "transactions/s"
    reference: str = ""  # the physical reference, e.g. "raw SQLite insert (same run)"
    reference_value: float | None = None
    target: str = ""  # e.g. ">= 0.3 x reference" or ">= 10000"
    met: bool | None = None  # whether the target was met, when it has one


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else Path("bench-results")
    only = set(argv[2:])
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    sources: list[str] = []
    for module_path in sorted(Path(__file__).parent.glob("bench_*.py")):
        name = module_path.stem
        if only and name not in only:
            continue
        started = time.perf_counter()
        print(f"running {name} ...", flush=True)
        module = importlib.import_module(f"tests.bench.{name}")
        found = module.run()
        rows.extend(found)
        sources += [name] * len(found)
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
    if not only:
        _into_benchmarks_md(Path(__file__).parents[2] / "BENCHMARKS.md", rows, sources)
    return 0


START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _into_benchmarks_md(path: Path, rows: list[Row], sources: list[str]) -> None:
    """Replace the table between the marks of BENCHMARKS.md with this run's."""
    lines = [
        START,
        f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}.",
        "",
        "| figure | value | reference (same run) | ratio | target | met | reproduce |",
        "|---|---:|---|---:|---|---|---|",
    ]
    for row, source in zip(rows, sources, strict=True):
        reference = f"{row.reference}: {_fmt(row.reference_value)}" if row.reference else ""
        ratio = (
            f"{row.value / row.reference_value:.2f}" if row.reference_value not in (None, 0) else ""
        )
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.figure} | {_fmt(row.value)} {row.unit} | {reference} | {ratio} | "
            f"{row.target} | {met} | `python -m tests.bench.run OUT {source}` |"
        )
    lines.append(END)
    text = (
        path.read_text(encoding="utf-8") if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    )
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + "\n".join(lines) + tail, encoding="utf-8")
    print(f"BENCHMARKS.md updated ({len(rows)} rows).")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
