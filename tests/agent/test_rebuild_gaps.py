"""A rebuilt outbox closes its gaps honestly: the agent's records were never sent, its
outbox was damaged in the middle (its last seq still readable), so the re-read numbers
on from there and central misses the seqs of the damaged file. Central asks for them; the
agent answers that it will never send them and why; central closes the gap, keeps the
reason as the store's audit, and asks no more."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.agent.test_daemon import STORE, drop_counts, start_agent, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.records import wait_for
from tests.support.relay import central_config, running_relay


def _wreck_middle(db: Path) -> None:
    """Overwrite pages in the middle: quick_check fails, the meta page still reads."""
    data = bytearray(db.read_bytes())
    data[4096 * 3 : 4096 * 5] = b"\xde\xad\xbe\xef" * 2048
    db.write_bytes(bytes(data))


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
    _wreck_middle(data / "outbox.db")

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
