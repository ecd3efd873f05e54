"""A stop at any step of an outbox rebuild loses nothing: the real agent is SIGKILLed at
each fail point of recovery and ingest (after the move-aside, mid re-read, inside a
re-read commit, right after the re-read, while a POS file commits), damaged again on top
where a brownout would do that, then started again; the real relay must end with every
transaction of the archive and of the POS folder, once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from agent._failpoints import ENV, POINTS
from tests.agent.test_daemon import BIN, STORE, drop_counts, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.records import wait_for
from tests.support.relay import central_config, running_relay

ARCHIVED_FILES = 4
ROWS = 25


def _damage(data_dir: Path) -> None:
    """What the fault run does: fold the WAL in, then wreck the header."""
    db = data_dir / "outbox.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with db.open("r+b") as handle:
        handle.write(b"\x00garbage" * 12)


def _prepare(tmp_path: Path) -> int:
    """An agent's data folder as a damaged outbox leaves it: files ingested and archived
    (never sent: central has none of them), the database wrecked beside its WAL; and the
    POS has written two more files meanwhile. Returns the records expected at central."""
    data = tmp_path / "data"
    for day in ("2024-03-16", "2024-03-17"):
        (data / "archive" / day).mkdir(parents=True)
    expected = drop_counts(data / "archive" / "2024-03-16", 1, ARCHIVED_FILES // 2, ROWS)
    expected += drop_counts(
        data / "archive" / "2024-03-17", 1 + ARCHIVED_FILES // 2, ARCHIVED_FILES // 2, ROWS
    )
    (data / "outbox.db").write_bytes(b"this is not a database" * 300)
    (data / "outbox.db-wal").write_bytes(b"nor is this a WAL" * 300)
    expected += drop_counts(tmp_path / "pos", 100, 2, ROWS)
    return expected


def _run_until_killed(config: Path, points: str) -> str:
    """Start the agent with fail points; it must die at one of them."""
    env = {**os.environ, ENV: points}
    process = subprocess.run(
        [str(BIN), "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    stderr = process.stderr.decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, (points, process.returncode, stderr[-2000:])
    return stderr


def _inbox_keys(inbox_db: Path) -> list[str]:
    with sqlite3.connect(inbox_db) as conn:
        rows = conn.execute("SELECT key FROM records WHERE store = ?", (STORE,))
        return [str(r[0]) for r in rows]


# Each case: the fail points of successive starts, and whether the outbox is damaged
# again after each kill (a second power cut in the same brownout).
CASES = {
    "after the WAL is moved aside": [("outbox.wal_moved_aside", False)],
    "after the move-aside": [("outbox.moved_aside", False)],
    "new outbox committed, nothing re-read": [("outbox.created", False)],
    "inside the second re-read commit": [("ingest.committing=2", False)],
    "mid re-read": [("reread.file_done=2", False)],
    "right after the re-read": [("reread.all_done", False)],
    "re-read mark cleared": [("reread.cleared", False)],
    "inside a POS file's commit": [(f"ingest.committing={ARCHIVED_FILES + 1}", False)],
    "a POS file committed, not archived": [(f"ingest.committed={ARCHIVED_FILES + 1}", False)],
    "damaged again mid re-read, then killed": [
        ("reread.file_done=1", True),
        ("outbox.created", False),
        ("reread.file_done=3", True),
        ("outbox.moved_aside", False),
    ],
}


def test_every_fail_point_is_exercised() -> None:
    used = {point.split("=")[0] for steps in CASES.values() for point, _ in steps}
    # The downlink's fail points are the downlink tests' own (tests/agent/downlink).
    assert used == {p for p in POINTS if not p.startswith("downlink.")}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("steps", list(CASES.values()), ids=list(CASES))
async def test_a_kill_at_any_step_of_recovery_loses_and_doubles_nothing(
    tmp_path: Path, mosquitto: Mosquitto, steps: list[tuple[str, bool]]
) -> None:
    config = write_config(tmp_path, mosquitto.url)
    expected = _prepare(tmp_path)
    inbox_db = tmp_path / "inbox.db"
    relay = central_config(mosquitto.url, f"sqlite:///{inbox_db}", tmp_path / "c")
    async with running_relay(relay) as (_, inbox):
        for points, damage_again in steps:
            stderr = await asyncio.to_thread(_run_until_killed, config, points)
            assert f"fail point {points.split('=')[0]} reached" in stderr
            if damage_again:
                _damage(tmp_path / "data")

        process = subprocess.Popen(
            [str(BIN), "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:

            async def all_arrived() -> bool:
                return (await inbox.stats())["records"] >= expected

            await wait_for(all_arrived, timeout=60)
            await asyncio.sleep(1.5)  # anything sent twice would land now
        finally:
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 30) == 0

        keys = _inbox_keys(inbox_db)
        assert len(keys) == len(set(keys)) == expected
        stats = await inbox.stats()
        assert stats["records"] == expected
        # The re-read finished: a start after this one reads nothing again.
        with sqlite3.connect(tmp_path / "data" / "outbox.db") as conn:
            marks = conn.execute("SELECT count(*) FROM meta WHERE name = 'reread'").fetchone()
            assert marks == (0,)
        assert not list((tmp_path / "pos").glob("*.csv"))  # every POS file taken
