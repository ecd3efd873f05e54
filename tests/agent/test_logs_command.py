"""`tillbridge-agent logs -f` follows the log as `tail -F` does: what is there, then each
entry as it is written, across a rollover, filtered like the rest."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "tillbridge-agent"


def _entry(n: int, correlation: str) -> str:
    return json.dumps(
        {
            "ts": "2026-12-05T10:00:00.000+00:00",
            "level": "info",
            "logger": "tillbridge.agent.sources",
            "msg": "File ingested.",
            "n": n,
            "correlation_id": correlation,
        }
    )


def _append(log: Path, *lines: str) -> None:
    with log.open("a", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")


class _Lines:
    """The process's stdout, line by line, from a thread (a pipe read with select would
    miss lines already in the reader's buffer)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        stream = process.stdout
        assert stream is not None
        threading.Thread(target=lambda: [self.queue.put(x) for x in stream], daemon=True).start()

    def take(self, count: int, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while len(lines) < count:
            try:
                lines.append(self.queue.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                break
        return lines


def test_logs_follow_prints_new_entries_across_a_rollover(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nstore = "0042"\ndata_dir = "{tmp_path / "data"}"\n')
    log = tmp_path / "data" / "logs" / "agent.log"
    log.parent.mkdir(parents=True)
    _append(log, _entry(1, "mine"), _entry(2, "other"))
    process = subprocess.Popen(
        [str(BIN), "logs", "-f", "--json", "--correlation", "mine", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = _Lines(process)
    try:
        seen = lines.take(1)
        _append(log, _entry(3, "other"), _entry(4, "mine"))
        seen += lines.take(1)
        log.rename(log.with_name("agent.log.1"))  # the handler rolls over
        _append(log.with_name("agent.log.1"), _entry(5, "mine"))  # written just before
        _append(log, _entry(6, "mine"))
        seen += lines.take(2)
        assert process.poll() is None  # still following
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(10)
    assert [json.loads(line)["n"] for line in seen] == [1, 4, 5, 6]
    assert code == 0
