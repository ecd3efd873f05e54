"""A rebuilt outbox closes its gaps honestly: the agent's records were never sent, its
outbox was damaged in the middle (its last seq still readable), so the re-read numbers
on from there and central misses the seqs of the damaged file. Central asks for them; the
agent answers that it will never send them and why; central closes the gap, keeps the
reason as the store's audit, and asks no more."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

from agent.daemon import read_status
from tests.agent.test_daemon import STORE, drop_counts, start_agent, write_config
from tests.support.damage import wreck_pages
from tests.support.mosquitto import Mosquitto
from tests.support.records import wait_for
from tests.support.relay import central_config, running_relay


async def test_seqs_of_a_damaged_outbox_are_released_not_asked_for_forever(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # The store is cut off: its records wait in the outbox, then the outbox is damaged.
    offline = write_config(tmp_path, "mqtt://127.0.0.1:1")
    expected = drop_counts(tmp_path / "pos", 1, 4, 200)
    agent = start_agent(offline)
    data = tmp_path / "data"

    async def archived() -> bool:
        return len(list((data / "archive").rglob("*.csv"))) == 4

    try:
        await wait_for(archived, timeout=30)
    finally:
        agent.send_signal(signal.SIGTERM)
        await asyncio.to_thread(agent.wait, 30)
    wreck_pages(data / "outbox.db", 3)  # the meta page still reads: its last seq too

    config = write_config(tmp_path, mosquitto.url)
    relay = central_config(
        mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c", gap_grace_seconds=1
    )
    async with running_relay(relay) as (intake, inbox):
        agent = start_agent(config)
        try:

            async def settled() -> bool:
                stats = await inbox.stats()
                return stats["records"] >= expected and not await inbox.gaps(STORE)

            await wait_for(settled, timeout=60)
            requests = intake.counters["resends"]
            await asyncio.sleep(4)  # several grace periods: nothing more is asked for
            assert intake.counters["resends"] == requests
        finally:
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(agent.wait, 30) == 0

        stats = await inbox.stats()
        assert stats["records"] == expected
        assert (stats["gaps"], stats["missing"], stats["exceptions"]) == (0, 0, 0)
        (release,) = await inbox.releases(STORE)
        assert (release.from_seq, release.cause) == (1, "rebuilt")
        assert release.to_seq == expected  # every seq of the damaged outbox
        assert "re-read from the archive" in release.reason
        (store,) = await inbox.stores()
        assert store.last_release == release
        assert store.contiguous_seq == store.max_seq == 2 * expected


async def test_a_rebuild_without_a_last_seq_numbers_on_from_centrals_highest(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = write_config(tmp_path, mosquitto.url)
    data = tmp_path / "data"
    relay = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c")
    sent = drop_counts(tmp_path / "pos", 1, 2, 50)
    async with running_relay(relay) as (_, inbox):
        agent = start_agent(config)
        try:

            async def arrived() -> bool:
                return (await inbox.stats())["records"] >= sent

            await wait_for(arrived, timeout=30)
        finally:
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(agent.wait, 30) == 0
    # The header is gone: the damaged file says nothing of its last seq.
    with (data / "outbox.db").open("r+b") as handle:
        handle.write(b"\x00" * 100)
    sent += drop_counts(tmp_path / "pos", 10, 1, 50)  # the POS goes on meanwhile

    agent = start_agent(config)  # the relay is away: nobody can say the highest seq yet
    try:

        async def waiting() -> bool:
            status = read_status(data)
            note = (status or {}).get("recovery") or ""
            return "waiting for central's highest seq" in note

        await wait_for(waiting, timeout=30)
        await asyncio.sleep(1)
        with sqlite3.connect(data / "outbox.db") as db:
            assert db.execute("SELECT count(*) FROM records").fetchone() == (0,)  # none numbered
        async with running_relay(relay) as (_, inbox):

            async def settled() -> bool:
                (store,) = await inbox.stores()
                return (await inbox.stats())["records"] >= sent and store.contiguous_seq > 150

            await wait_for(settled, timeout=60)
            (store,) = await inbox.stores()
            assert (await inbox.stats())["records"] == sent
            assert await inbox.gaps(STORE) == []
    finally:
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 30) == 0
    with sqlite3.connect(data / "outbox.db") as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM records ORDER BY seq")]
    # Central had seqs 1-100: the rebuilt outbox numbered from 101, so no seq names two
    # records there (the re-read 100 are duplicates by key, the new file's 50 are new).
    assert seqs == list(range(101, 251))
    assert store.max_seq == store.contiguous_seq == 250
