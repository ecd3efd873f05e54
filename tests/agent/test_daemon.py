"""The store daemon as a real process against a real Mosquitto and the real relay: files
dropped into a POS folder arrive at central once; SIGKILL mid-stream then restart loses
and doubles nothing; SIGTERM stops cleanly; a damaged outbox is rebuilt from the archive;
end-of-day records are queued once per closed day."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.config import AgentConfig, OutboxSettings, SourceSettings
from agent.daemon import Agent, closed_before, read_status
from agent.outbox import Outbox
from agent.parsers import Skipped
from agent.sources import (
    IngestFile,
    archive_days,
    list_quarantined,
    read_archived_file,
    retry_quarantined,
)
from contract import Transaction, make_key
from tests.support.damage import wreck_pages
from tests.support.mosquitto import Mosquitto
from tests.support.records import wait_for
from tests.support.relay import central_config, running_relay

BIN = Path(sys.executable).parent / "tillbridge-agent"
STORE = "0042"


def write_config(tmp_path: Path, broker_url: str, **agent: str) -> Path:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in agent.items())
    config = tmp_path / "agent.toml"
    config.write_text(
        "[agent]\n"
        f'store = "{STORE}"\n'
        'agent_id = "till-pc-1"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        'timezone = "Europe/Berlin"\n'
        f"{extra}"
        "[agent.broker]\n"
        f'url = "{broker_url}"\n'
        "[agent.uplink]\n"
        "ack_timeout_seconds = 3\n"
        "reconnect_min_seconds = 0.1\n"
        "reconnect_max_seconds = 0.5\n"
        "heartbeat_seconds = 1\n"
        "[[agent.sources]]\n"
        'name = "counts"\n'
        f'path = "{tmp_path / "pos"}"\n'
        'format = "inventory"\n'
        'include = ["**/*.csv"]\n'
        "settle_seconds = 0.1\n"
        "rescan_seconds = 1\n"
    )
    (tmp_path / "pos").mkdir(exist_ok=True)
    return config


def drop_counts(folder: Path, first: int, files: int, rows: int) -> int:
    """Count files (unique SKUs) written the safe way: .tmp, then rename. Returns records."""
    for n in range(first, first + files):
        lines = ["sku,location,qty,counted_at"]
        lines += [f"{n * 1000 + j},FLOOR,{j + 1},2024-03-15T21:30:00" for j in range(rows)]
        tmp = folder / f"counts_{n:05d}.csv.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.rename(folder / f"counts_{n:05d}.csv")
    return files * rows


def damaged_outbox(path: Path, last_seq: int = 7) -> None:
    """An outbox damaged in the middle: `quick_check` fails, its last seq still reads (one
    that gives none makes the agent wait for central's highest seq first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('last_seq', ?)", (str(last_seq),))
        db.execute("CREATE TABLE filler (n INTEGER PRIMARY KEY, text TEXT)")
        db.executemany("INSERT INTO filler VALUES (?, ?)", [(n, "x" * 500) for n in range(200)])
    db.close()
    wreck_pages(path, 4)


def start_agent(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN), "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def agents() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def outbox_seqs(data_dir: Path) -> list[int]:
    with sqlite3.connect(data_dir / "outbox.db") as db:
        return [int(r[0]) for r in db.execute("SELECT seq FROM records ORDER BY seq")]


async def test_files_reach_central_once_and_sigterm_stops_cleanly(
    tmp_path: Path, mosquitto: Mosquitto, agents: list[subprocess.Popen[bytes]]
) -> None:
    config = write_config(tmp_path, mosquitto.url)
    relay = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c")
    async with running_relay(relay) as (_, inbox):
        expected = drop_counts(tmp_path / "pos", 1, 5, 20)
        agents.append(start_agent(config))

        async def arrived() -> bool:
            return (await inbox.stats())["records"] >= expected

        await wait_for(arrived, timeout=30)
        archived = sorted(p.name for p in (tmp_path / "data" / "archive").rglob("*.csv"))
        assert archived == [f"counts_{n:05d}.csv" for n in range(1, 6)]
        assert not list((tmp_path / "pos").glob("*.csv"))

        async def reported() -> bool:
            status = read_status(tmp_path / "data")
            return bool(status and status["connected"] and status["outbox"]["pending"] == 0)

        await wait_for(reported, timeout=15)
        status, code, said = await asyncio.to_thread(agent_status, config)
        assert (status["answered_by"], code, said) == ("running agent", 0, "")  # healthy
        agents[0].send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agents[0].wait, 30) == 0
        stats = await inbox.stats()
        assert stats["records"] == expected

        async def offline() -> bool:
            return any(s.state == "offline" for s in await inbox.stores())

        await wait_for(offline, timeout=10)


async def test_one_correlation_id_finds_a_file_in_the_agents_log_and_at_central(
    tmp_path: Path,
    mosquitto: Mosquitto,
    agents: list[subprocess.Popen[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The id central shows for a record is the one on every agent log line about its
    file: `logs --correlation ID` finds the file's story (and a refused file's lines
    share one id too); the relay's receipt names it as well."""
    caplog.set_level(logging.INFO, logger="tillbridge.central")
    config = write_config(tmp_path, mosquitto.url)
    relay = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c")
    async with running_relay(relay) as (_, inbox):
        expected = drop_counts(tmp_path / "pos", 1, 3, 4)
        (tmp_path / "pos" / "broken.csv").write_text("not, a, count\n")
        agents.append(start_agent(config))

        async def arrived() -> bool:
            return (await inbox.stats())["records"] >= expected

        await wait_for(arrived, timeout=30)
        found = await inbox.search_records(limit=100)
        agents[0].send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agents[0].wait, 30) == 0
    by_id: dict[str, set[str]] = {}
    for record in found:
        by_id.setdefault(str(record["correlation_id"]), set()).add(str(record["key"]))
    assert len(by_id) == 3  # one id per file, as central shows it
    receipts = [r for r in caplog.records if r.getMessage() == "Batch acknowledged."]
    named = {c for r in receipts for c in getattr(r, "record_correlation_ids", [])}
    assert set(by_id) <= named
    for correlation, keys in by_id.items():
        result = subprocess.run(
            [str(BIN), "logs", "--json", "--correlation", correlation, "--config", str(config)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        story = [json.loads(line) for line in result.stdout.splitlines()]
        ingested = [e for e in story if e["msg"] == "File ingested."]
        assert len(ingested) == 1, story
        assert ingested[0]["records"] == len(keys) == 4
        assert ingested[0]["file"].startswith("counts_")
    lines = [
        json.loads(line)
        for line in (tmp_path / "data" / "logs" / "agent.log").read_text().splitlines()
    ]
    refused = [e for e in lines if e.get("file") == "broken.csv"]
    assert any(e["msg"] == "File refused and quarantined." for e in refused)
    assert len({e.get("correlation_id") for e in refused}) == 1
    assert refused[0].get("correlation_id")


async def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(
    tmp_path: Path, mosquitto: Mosquitto, agents: list[subprocess.Popen[bytes]]
) -> None:
    config = write_config(tmp_path, mosquitto.url)
    relay = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c")
    async with running_relay(relay) as (_, inbox):
        expected = drop_counts(tmp_path / "pos", 1, 40, 200)
        agents.append(start_agent(config))

        async def some_arrived() -> bool:
            return (await inbox.stats())["records"] > 500

        await wait_for(some_arrived, timeout=30)
        agents[0].send_signal(signal.SIGKILL)
        agents[0].wait(10)
        assert (await inbox.stats())["records"] < expected  # it really was cut off mid-stream
        expected += drop_counts(tmp_path / "pos", 100, 5, 200)  # the POS goes on meanwhile
        agents.append(start_agent(config))

        async def all_arrived() -> bool:
            return (await inbox.stats())["records"] >= expected

        await wait_for(all_arrived, timeout=60)
        await asyncio.sleep(1)  # anything doubled would land now
        assert (await inbox.stats())["records"] == expected
        seqs = outbox_seqs(tmp_path / "data")
        assert seqs == list(range(1, len(seqs) + 1))  # gap-free across the crash
        assert len(seqs) == expected
        assert (await inbox.gaps(STORE)) == []


def offline_with_archive(tmp_path: Path, files: int) -> tuple[AgentConfig, Path]:
    """An agent that cannot reach its broker, with count files in its archive and its
    outbox damaged: (its config, the archive day's folder)."""
    config = AgentConfig(
        store=STORE,
        data_dir=tmp_path / "data",
        broker={"url": "mqtt://127.0.0.1:1"},  # type: ignore[arg-type]
        sources=[SourceSettings(name="counts", path=tmp_path / "pos", format="inventory")],
        outbox=OutboxSettings(),
    )
    archive = config.archive_dir / "2024-03-16"
    archive.mkdir(parents=True)
    drop_counts(archive, 1, files, 10)
    damaged_outbox(config.outbox_path)
    (tmp_path / "pos").mkdir()
    return config, archive


async def test_a_damaged_outbox_is_rebuilt_from_the_archive(tmp_path: Path) -> None:
    config, _ = offline_with_archive(tmp_path, 3)

    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))

    async def rebuilt() -> bool:
        return agent.recovery_note is not None and agent.watchers is not None

    await wait_for(rebuilt, timeout=15)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert agent.recovery_note == "re-read 3 archived file(s) after the outbox was rebuilt"
    assert len(outbox_seqs(config.data_dir)) == 30
    assert list(config.data_dir.glob("outbox.db.damaged-*"))  # kept for inspection
    status = read_status(config.data_dir)
    assert status is not None
    assert "rebuilt" in status["outbox"]["recovered"]


async def test_an_archived_file_that_no_longer_reads_is_quarantined_not_dropped(
    tmp_path: Path,
) -> None:
    config, archive = offline_with_archive(tmp_path, 2)
    unreadable = archive / "counts_00009.csv"
    unreadable.write_text("sku,location,qty,counted_at\nA,FLOOR,not-a-number,2024-03-15\n")

    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await wait_for(lambda: asyncio.sleep(0, agent.watchers is not None), timeout=15)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert agent.recovery_note == (
        "re-read 2 archived file(s) after the outbox was rebuilt; 1 could not be read (see the log)"
    )
    assert unreadable.exists()  # the archive keeps its copy
    [quarantined] = list_quarantined(config.quarantine_dir)
    assert quarantined.name == "counts_00009.csv"
    # The file as the POS wrote it (the archive's copy may be sealed with the outbox key).
    assert quarantined.path.read_bytes() == read_archived_file(unreadable, config.outbox_key_file)
    assert "could not be re-read from the archive" in quarantined.reason
    assert quarantined.folder == str(tmp_path / "pos")  # `quarantine retry` takes it there
    assert retry_quarantined(config.quarantine_dir, quarantined.name).parent == tmp_path / "pos"


def sale(txn: str, day: date, total: str) -> Transaction:
    return Transaction.model_validate(
        {
            "kind": "sale",
            "key": make_key("sale", STORE, "1", day, txn),
            "store": STORE,
            "business_date": day.isoformat(),
            "occurred_at": f"{day.isoformat()}T23:50:00+01:00",
            "source": {"file": "pos.xml"},
            "transaction_id": txn,
            "currency": "EUR",
            "total": total,
            "tenders": [{"type": "cash", "amount": total}],
        }
    )


async def test_end_of_day_is_queued_once_per_closed_day(tmp_path: Path) -> None:
    config = AgentConfig(store=STORE, data_dir=tmp_path, timezone="Europe/Berlin")
    outbox = await Outbox.open(config.outbox_path, config.outbox, key_file=tmp_path / "k")
    try:
        day = date(2024, 3, 15)
        items = [
            sale("1", day, "10.00"),
            sale("2", day, "5.50"),
            Skipped("training", STORE, day, "3"),
            sale("4", date(2024, 3, 16), "1.00"),  # the next day is still open
        ]
        await outbox.ingest(IngestFile("pos", "a", "a", "a", 1), iter(items))
        agent = Agent(config)
        agent.outbox = outbox
        zone = ZoneInfo("Europe/Berlin")
        before_close = datetime(2024, 3, 16, 3, 59, tzinfo=zone)
        assert await agent.end_of_day(before_close) == 0  # 04:00 closes the 15th
        after_close = datetime(2024, 3, 16, 4, 0, tzinfo=zone)
        assert await agent.end_of_day(after_close) == 1
        assert await agent.end_of_day(after_close) == 0  # once
        await outbox.ingest(IngestFile("pos", "b", "b", "b", 1), iter([sale("9", day, "2.00")]))
        assert await agent.end_of_day(after_close) == 1  # a late record raises the revision
        rows = [r for r in await outbox.claim_pending(100) if r.kind == "end_of_day"]
        bodies = [json.loads(r.wire)["body"] for r in rows]
        assert [b["revision"] for b in bodies] == [1, 2]
        assert bodies[0]["by_kind"]["sale"] == {"count": 2, "amount": "15.50"}
        assert bodies[0]["training"] == 1
        assert bodies[1]["by_kind"]["sale"] == {"count": 3, "amount": "17.50"}
    finally:
        await outbox.close()


def test_a_day_closes_at_the_configured_local_time() -> None:
    zone = ZoneInfo("Europe/Berlin")
    assert closed_before(datetime(2024, 3, 16, 3, 59, tzinfo=zone), "04:00") == date(2024, 3, 15)
    assert closed_before(datetime(2024, 3, 16, 4, 0, tzinfo=zone), "04:00") == date(2024, 3, 16)


def test_status_without_a_daemon_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path, "mqtt://127.0.0.1:1")
    result = subprocess.run(
        [str(BIN), "status", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 3  # not running, as systemd says it
    assert "has not run here yet" in result.stderr
    assert os.environ.get("TILLBRIDGE_AGENT__STORE") is None


async def test_hostile_files_are_quarantined_and_can_be_retried(tmp_path: Path) -> None:
    config_file = write_config(tmp_path, "mqtt://127.0.0.1:1")
    pos = tmp_path / "pos"
    hostile = {
        "empty.csv": b"",
        "binary.csv": bytes(range(256)) * 64,
        "missing_column.csv": b"sku,location\n1,FLOOR\n",
        "bad_number.csv": b"sku,location,qty,counted_at\n1,FLOOR,lots,2024-03-15T21:30:00\n",
        "long_line.csv": b"sku,location,qty,counted_at\n" + b"9" * 5_000_000 + b"\n",
    }
    for name, data in hostile.items():
        (pos / name).write_bytes(data)
    good = drop_counts(pos, 1, 1, 5)
    from agent.config import load_agent_config

    config = load_agent_config(config_file)
    agent = Agent(config, config_file=config_file)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    quarantine = config.quarantine_dir

    async def settled() -> bool:
        return len(list(quarantine.glob("*.error.txt"))) == len(hostile) and not list(
            pos.glob("*.csv")
        )

    await wait_for(settled, timeout=20)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert len(outbox_seqs(config.data_dir)) == good  # the daemon lived on and took the good one
    note = (quarantine / "bad_number.csv.error.txt").read_text()
    assert "Reason:" in note
    assert "line 2" in note
    assert f"tillbridge-agent quarantine retry bad_number.csv --config {config_file}" in note

    listed = subprocess.run(
        [str(BIN), "quarantine", "list", "--config", str(config_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert all(name in listed for name in hostile)
    subprocess.run(
        [str(BIN), "quarantine", "retry", "bad_number.csv", "--config", str(config_file)],
        check=True,
        capture_output=True,
    )
    assert (pos / "bad_number.csv").exists()
    assert not (quarantine / "bad_number.csv.error.txt").exists()


async def test_a_full_outbox_leaves_files_in_the_folder_until_it_drains(tmp_path: Path) -> None:
    config = AgentConfig(
        store=STORE,
        data_dir=tmp_path / "data",
        broker={"url": "mqtt://127.0.0.1:1"},  # type: ignore[arg-type]
        sources=[
            SourceSettings(
                name="counts", path=tmp_path / "pos", format="inventory", settle_seconds=0.05
            )
        ],
        outbox=OutboxSettings(max_rows=10),
    )
    (tmp_path / "pos").mkdir()
    drop_counts(tmp_path / "pos", 1, 3, 10)
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:

        async def blocked() -> bool:
            return agent.outbox is not None and not agent.outbox.accepting()

        await wait_for(blocked, timeout=15)
        await asyncio.sleep(0.5)
        assert len(list((tmp_path / "pos").glob("*.csv"))) == 2  # waiting, not dropped
        await agent.write_status()
        status = read_status(config.data_dir)
        assert status is not None
        assert status["outbox"]["budget"].startswith("blocked: buffer full")
        outbox = agent.outbox
        assert outbox is not None

        async def resumed() -> bool:
            await outbox.acknowledge(range(1, outbox.last_seq + 1), {})  # central catches up
            return not list((tmp_path / "pos").glob("*.csv"))

        await wait_for(resumed, timeout=15)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_file_for_another_store_is_refused(tmp_path: Path) -> None:
    from agent.config import load_agent_config

    config_file = write_config(tmp_path, "mqtt://127.0.0.1:1")
    other = "store,sku,location,qty,counted_at\n0099,1,FLOOR,3,2024-03-15T21:30:00\n"
    (tmp_path / "pos" / "other.csv").write_text(other)
    config = load_agent_config(config_file)
    agent = Agent(config, config_file=config_file)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    note = config.quarantine_dir / "other.csv.error.txt"

    async def refused() -> bool:
        return note.exists()

    await wait_for(refused, timeout=15)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert "the file is for store '0099', this agent sends for store '0042'" in note.read_text()
    assert outbox_seqs(config.data_dir) == []


async def test_replay_sends_archived_files_again_and_needs_the_agent_stopped(
    tmp_path: Path, mosquitto: Mosquitto, agents: list[subprocess.Popen[bytes]]
) -> None:
    config = write_config(tmp_path, mosquitto.url)
    relay = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c")
    async with running_relay(relay) as (intake, inbox):
        expected = drop_counts(tmp_path / "pos", 1, 3, 10)
        agents.append(start_agent(config))

        async def arrived() -> bool:
            return (await inbox.stats())["records"] >= expected

        await wait_for(arrived, timeout=30)
        [(_, folder)] = archive_days(tmp_path / "data" / "archive")
        day = folder.name
        busy = subprocess.run(
            [str(BIN), "replay", "--config", str(config), "--since", day],
            capture_output=True,
            text=True,
        )
        assert busy.returncode == 1
        assert "stop that agent first" in busy.stderr
        agents[0].send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agents[0].wait, 30) == 0

        done = subprocess.run(
            [str(BIN), "replay", "--config", str(config), "--since", day],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert f"queued {expected} records ({expected} sent again, 0 re-read)" in done.stdout
        agents.append(start_agent(config))

        async def resent() -> bool:
            return intake.counters["duplicates"] >= expected

        await wait_for(resent, timeout=30)
        assert (await inbox.stats())["records"] == expected  # central kept one of each


def agent_status(config: Path) -> tuple[dict[str, object], int, str]:
    """The status JSON, the exit code and what was said on stderr."""
    result = subprocess.run(
        [str(BIN), "status", "--json", "--config", str(config)], capture_output=True, text=True
    )
    data: dict[str, object] = json.loads(result.stdout) if result.stdout else {}
    return data, result.returncode, result.stderr


async def test_status_comes_from_the_running_agent_else_from_file_and_database(
    tmp_path: Path, agents: list[subprocess.Popen[bytes]]
) -> None:
    from tests.support.mosquitto import free_port

    config = write_config(tmp_path, "mqtt://127.0.0.1:1", status_listen=f"127.0.0.1:{free_port()}")
    drop_counts(tmp_path / "pos", 1, 1, 4)
    agents.append(start_agent(config))

    async def live() -> bool:
        status, code, said = await asyncio.to_thread(agent_status, config)
        if not status:
            return False
        outbox = status["outbox"]
        if status["answered_by"] == "running agent" and outbox["pending"] == 4:  # type: ignore[index]
            # Running, with a problem it names: systemd's 1.
            assert code == 1
            assert "problem: not connected to the broker" in said
            return True
        return False

    await wait_for(live, timeout=20)
    agents[0].send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(agents[0].wait, 30) == 0
    after, code, said = await asyncio.to_thread(agent_status, config)
    assert code == 3  # not running: systemd's 3
    assert "problem: the agent is not running" in said
    assert str(after["answered_by"]).startswith("status file and database")
    assert after["connected"] is False
    assert after["database"]["records_by_state"] == {"pending": 4}  # type: ignore[index]


async def test_status_finds_the_running_agent_after_its_config_changed(
    tmp_path: Path, agents: list[subprocess.Popen[bytes]]
) -> None:
    """The port in the config is read once, at start: `status` asks at the address the
    daemon wrote to its data folder, so a config rewritten under a running agent (another
    port, or port 0) does not make a healthy agent look stopped."""
    from tests.support.mosquitto import free_port

    config = write_config(tmp_path, "mqtt://127.0.0.1:1", status_listen="127.0.0.1:0")
    agents.append(start_agent(config))

    async def answered() -> bool:
        status, _, _ = await asyncio.to_thread(agent_status, config)
        return status.get("answered_by") == "running agent"

    await wait_for(answered, timeout=20)
    write_config(tmp_path, "mqtt://127.0.0.1:1", status_listen=f"127.0.0.1:{free_port()}")
    status, code, said = await asyncio.to_thread(agent_status, config)
    assert status["answered_by"] == "running agent"
    assert status["pid"] == agents[0].pid
    assert code == 1  # running, with its problem named (no broker here), not "stopped"
    assert "problem: the agent is not running" not in said
    agents[0].send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(agents[0].wait, 30) == 0
    assert not (tmp_path / "data" / "status.address").exists()
    assert (await asyncio.to_thread(agent_status, config))[1] == 3


async def test_status_counts_the_files_in_quarantine_not_the_refusals(tmp_path: Path) -> None:
    from agent.sources._quarantine import quarantine_file

    config = AgentConfig(
        store=STORE,
        data_dir=tmp_path / "data",
        sources=[SourceSettings(name="counts", path=tmp_path / "pos", format="inventory")],
    )
    (tmp_path / "pos").mkdir()
    agent = Agent(config)
    for name in ("a.csv", "b.csv"):
        bad = tmp_path / "pos" / name
        bad.write_text("not, a, count\n")
        quarantine_file(
            bad,
            config.quarantine_dir,
            source="counts",
            folder=tmp_path / "pos",
            sha256="",
            reason="not a count export",
            place="line 1",
            when=datetime.now(ZoneInfo("UTC")),
        )
    assert (await agent.status())["quarantined_files"] == 2
    retry_quarantined(config.quarantine_dir, "a.csv")  # taken back: no longer in quarantine
    assert (await agent.status())["quarantined_files"] == 1


async def test_status_names_a_source_folder_that_cannot_be_read(
    tmp_path: Path, agents: list[subprocess.Popen[bytes]]
) -> None:
    config = write_config(tmp_path, "mqtt://127.0.0.1:1", status_listen="127.0.0.1:0")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    config.write_text(
        config.read_text()
        + f'[[agent.sources]]\nname = "loop"\npath = "{loop}"\nformat = "inventory"\n'
    )
    drop_counts(tmp_path / "pos", 1, 1, 2)
    agents.append(start_agent(config))

    async def shown() -> bool:
        status, _, _ = await asyncio.to_thread(agent_status, config)
        if status.get("answered_by") != "running agent":
            return False
        sources: dict[str, dict[str, object]] = status["sources"]  # type: ignore[assignment]
        if set(sources) != {"counts", "loop"}:  # the watchers are not started yet
            return False
        return sources["counts"]["ingested"] == 1 and bool(sources["loop"]["unreadable_now"])

    await wait_for(shown, timeout=20)
    status, _, _ = await asyncio.to_thread(agent_status, config)
    assert status["sources"]["loop"]["unreadable_now"] == {  # type: ignore[index]
        str(loop): "a symbolic link loop"
    }
    assert status["sources"]["loop"]["unreadable"] == 1  # type: ignore[index]
    text = subprocess.run(
        [str(BIN), "status", "--config", str(config)], capture_output=True, text=True
    )
    assert text.returncode == 1
    assert f"CANNOT READ {loop}: a symbolic link loop" in text.stdout
    assert f"problem: source loop: cannot read {loop}: a symbolic link loop" in text.stderr
    assert text.stderr.count(f"cannot read {loop}") == 1  # its last error is not said twice
    agents[0].send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(agents[0].wait, 30) == 0
