"""`make bench` puts its table into BENCHMARKS.md between the marks, notes untouched."""

from __future__ import annotations

from pathlib import Path

from tests.bench.run import END, START, Row, _into_benchmarks_md


def test_the_table_is_replaced_and_the_notes_stay(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\nintro\n\n{START}\nold table\n{END}\n\n## Notes\nkept\n")
    rows = [
        Row("drain", 65406, "records/s", "mosquitto_pub -l", 189360, ">= 0.3 x reference", True),
        Row("p99", 307, "ms", target="<= 500 ms", met=False),
    ]
    _into_benchmarks_md(path, rows, ["bench_drain", "bench_latency"])
    text = path.read_text()
    assert "old table" not in text
    assert text.startswith("# Benchmarks\n\nintro\n\n" + START)
    assert text.endswith(END + "\n\n## Notes\nkept\n")
    assert (
        "| drain | 65,406 records/s | mosquitto_pub -l: 189,360 | 0.35 | >= 0.3 x reference | yes "
        "| `python -m tests.bench.run OUT bench_drain` |"
    ) in text
    assert "| p99 | 307 ms |  |  | <= 500 ms | **no** |" in text
