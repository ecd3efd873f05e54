"""Latency from a POS file becoming stable to its records committed in the relay's
inbox, while online: real agent, Mosquitto and relay processes, one file at a time.

A file counts as stable when its settle window has passed after the POS renamed it into
the folder; the figure is the time from then until the inbox committed the file's last
record (p50 and p99 over the files).
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from datetime import datetime
from pathlib import Path

from lab.chaos import Stage
from tests.bench.run import Row

FILES = 200
PER_FILE = 5
SETTLE = 0.3
TARGET_P99_MS = 500.0


def _received(inbox: Path) -> dict[str, datetime]:
    with sqlite3.connect(f"file:{inbox}?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute(
            "SELECT json_extract(body, '$.source.file'), MAX(received_at) FROM records GROUP BY 1"
        ).fetchall()
    return {name: datetime.fromisoformat(at) for name, at in rows}


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="tb-latency-") as tmp:
        stage = Stage(Path(tmp), 1, seed=3, small_buffer=False)
        store = stage.stores[0]
        stage.start()
        try:
            time.sleep(3)  # agent connected, relay subscribed
            written: dict[str, float] = {}
            for _ in range(FILES):
                path = stage.tills[store].write(PER_FILE)
                written[path.name] = time.time()
                time.sleep(0.15)
            deadline = time.monotonic() + 60
            got: dict[str, datetime] = {}
            while time.monotonic() < deadline:
                got = _received(stage.inbox)
                if set(written) <= set(got):
                    break
                time.sleep(0.5)
        finally:
            stage.stop()
    waits = sorted(
        (got[name].timestamp() - (at + SETTLE)) * 1000
        for name, at in written.items()
        if name in got
    )
    missing = len(written) - len(waits)
    p50 = waits[len(waits) // 2]
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    note = f" ({missing} files never arrived)" if missing else ""
    return [
        Row(
            f"file stable → records committed in the inbox, p50 ({FILES} files){note}",
            p50,
            "ms",
            reference="settle window the agent waits before taking a file",
            reference_value=SETTLE * 1000,
        ),
        Row(
            f"file stable → records committed in the inbox, p99 ({FILES} files){note}",
            p99,
            "ms",
            target=f"<= {TARGET_P99_MS:.0f} ms",
            met=p99 <= TARGET_P99_MS and not missing,
        ),
    ]
