"""The downlink end to end on a real Mosquitto, central played by the test: a batch on
`{prefix}/{store}/down` is answered on `/downack` once committed; each order lands in the
import folder once, through resends and a POS that took the file away; a batch for
another store is refused; a writer that fails keeps the order pending and `status` names
it, until the POS is back."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config import load_agent_config
from agent.daemon import Agent
from tests.agent.downlink.central import central, downlink_config
from tests.agent.downlink.orders import cancel, message, order
from tests.agent.test_daemon import BIN
from tests.support.mosquitto import Mosquitto
from tests.support.records import wait_for


@pytest.fixture
async def running(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[tuple[Agent, Path]]:
    """The agent in this process, connected, downlink on (file writer, JSON)."""
    config_file = downlink_config(
        tmp_path, mosquitto.url, alert_after_seconds=1, retry_min_seconds=0.2, retry_max_seconds=0.5
    )
    agent = Agent(load_agent_config(config_file), config_file=config_file)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))

    async def connected() -> bool:
        return agent.uplink is not None and agent.uplink.connected.is_set()

    await wait_for(connected, timeout=20)
    try:
        yield agent, config_file
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_orders_land_once_through_resends_and_a_pos_that_took_them(
    tmp_path: Path, mosquitto: Mosquitto, running: tuple[Agent, Path]
) -> None:
    folder = tmp_path / "import"
    folder.mkdir()
    async with central(mosquitto.port) as hub:
        first, second = message(1, order("A")), message(2, order("B"))
        await hub.send(first, second)
        ack = await hub.ack_for({1, 2})
        assert (ack.store, ack.through) == ("0042", 2)
        await wait_for(lambda: asyncio.sleep(0, len(_files(folder)) == 2))
        names = _files(folder)
        assert names == ["order_ct-main_id-A_1.json", "order_ct-main_id-B_1.json"]
        before = {n: (folder / n).read_bytes() for n in names}

        # Central did not hear the answer and sends both again: answered, nothing new.
        await hub.send(first, second)
        again = await hub.ack_for({1, 2})
        assert again.through == 2
        await asyncio.sleep(0.5)
        assert {n: (folder / n).read_bytes() for n in _files(folder)} == before

        # The POS has taken order A away; a resend of it must not put it back.
        (folder / names[0]).unlink()
        await hub.send(first)
        await hub.ack_for({1})
        await asyncio.sleep(0.5)
        assert _files(folder) == [names[1]]

        # The cancellation of B lands as a file of its own.
        await hub.send(message(3, cancel("B")))
        assert (await hub.ack_for({3})).through == 3
        await wait_for(lambda: asyncio.sleep(0, len(_files(folder)) == 2))
        assert "order_cancel_ct-main_id-B_2.json" in _files(folder)
        cancelled = json.loads((folder / "order_cancel_ct-main_id-B_2.json").read_text())
        assert cancelled["kind"] == "order_cancel"


async def test_a_batch_for_another_store_is_refused(
    tmp_path: Path, mosquitto: Mosquitto, running: tuple[Agent, Path]
) -> None:
    folder = tmp_path / "import"
    folder.mkdir()
    agent, _ = running
    async with central(mosquitto.port) as hub:
        # On this store's topic, but naming another store (a misrouting relay).
        await hub.send(message(1, order("X", store="0099")), store="0099")
        # A batch of this store's afterwards proves the first was read and passed over.
        await hub.send(message(1, order("A")))
        ack = await hub.ack_for({1})
        assert ack.through == 1
        await wait_for(lambda: asyncio.sleep(0, len(_files(folder)) == 1))
        assert _files(folder) == ["order_ct-main_id-A_1.json"]
        assert len(hub.acks) == 1  # the refused batch got no answer
        assert agent.downlink is not None
        assert agent.downlink.refused_batches == 1


def _status(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_a_failing_writer_keeps_the_order_pending_and_status_shows_it(
    tmp_path: Path, mosquitto: Mosquitto, running: tuple[Agent, Path]
) -> None:
    folder = tmp_path / "import"  # not there: the POS's share is down
    agent, config = running
    async with central(mosquitto.port) as hub:
        await hub.send(message(1, order("A")))
        await hub.ack_for({1})  # committed at the store: central may let go

        async def alerted() -> bool:
            assert agent.downlink is not None
            summary = await agent.downlink.summary()
            return bool(summary.alerts) and summary.alerts[0]["attempts"] >= 2

        await wait_for(alerted, timeout=15)

        async def heartbeat_says_so() -> bool:  # what central's dashboard reads
            last = hub.heartbeats[-1] if hub.heartbeats else {}
            return last.get("orders_waiting") == 1 and last.get("orders_alert") == 1

        await wait_for(heartbeat_says_so, timeout=10)
        shown = await asyncio.to_thread(_status, config)
        assert shown.returncode == 1, shown.stderr
        assert "order A (downlink seq 1) not written to the POS" in shown.stderr
        assert "does not exist" in shown.stderr
        assert "ORDER ALERT" in shown.stdout
        assert "1 received and not yet written to the POS" in shown.stdout

        folder.mkdir()  # the share is back: the next retry writes it
        await wait_for(lambda: asyncio.sleep(0, _files(folder) == ["order_ct-main_id-A_1.json"]))
        shown = await asyncio.to_thread(_status, config)
        assert "not written to the POS" not in shown.stderr
        assert "0 received and not yet written to the POS" in shown.stdout
        assert shown.returncode == 0, shown.stderr

        async def heartbeat_clear() -> bool:
            last = hub.heartbeats[-1] if hub.heartbeats else {}
            return last.get("orders_waiting") == 0 and last.get("orders_alert") == 0

        await wait_for(heartbeat_clear, timeout=10)


async def test_status_of_a_stopped_agent_reads_the_waiting_orders_from_its_database(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config_file = downlink_config(tmp_path, mosquitto.url, alert_after_seconds=3600)
    agent = Agent(load_agent_config(config_file), config_file=config_file)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await wait_for(
            lambda: asyncio.sleep(0, agent.uplink is not None and agent.uplink.connected.is_set())
        )
        async with central(mosquitto.port) as hub:
            await hub.send(message(1, order("A")), message(2, order("B")))
            await hub.ack_for({1, 2})
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    shown = await asyncio.to_thread(_status, config_file)
    assert shown.returncode == 3  # not running
    assert "2 received and not yet written to the POS" in shown.stdout
