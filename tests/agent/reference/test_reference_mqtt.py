"""Reference data end to end at the store on a real Mosquitto, central played by the
test: a new store asks for everything in its heartbeat; customers and items central sends
on `{prefix}/{store}/down` are answered, stored and written to the POS's import folder as
the latest state once; the till looks them up on loopback; `resync` asks again until
central's answer arrives; a purge takes the customer away; `status` shows it all."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from agent.config import load_agent_config
from agent.daemon import Agent, read_status_address
from tests.agent.downlink.central import central, downlink_config
from tests.agent.reference.refdata import customer, item, purge, ref
from tests.agent.test_daemon import BIN
from tests.support.mosquitto import Mosquitto
from tests.support.records import wait_for


@pytest.fixture
async def running(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[tuple[Agent, Path]]:
    """The agent in this process, connected, reference data on (customer CSV, POSLog)."""
    config_file = downlink_config(tmp_path, mosquitto.url)
    config_file.write_text(
        config_file.read_text()
        + "[agent.reference]\nenabled = true\n"
        + f"folder = {json.dumps(str(tmp_path / 'ref-in'))}\n"
        + 'customers = "customer_csv"\nitems = "poslog"\n'
    )
    (tmp_path / "ref-in").mkdir()
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


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=30)


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


async def test_reference_data_reaches_the_pos_and_the_till(
    tmp_path: Path, mosquitto: Mosquitto, running: tuple[Agent, Path]
) -> None:
    agent, config = running
    folder = tmp_path / "ref-in"
    async with central(mosquitto.port) as hub:
        # A new reference.db: the heartbeat asks central for everything.
        async def asking() -> dict[str, object] | None:
            for beat in reversed(hub.heartbeats):
                if beat.get("resync") == ["customers", "items"]:
                    return beat
            return None

        beat = await wait_for(asking, timeout=10)
        asked = datetime.fromisoformat(str(beat["resync_requested_at"]))

        # Central answers with what it holds now: several versions of one customer came
        # while the store was away; the store writes the newest, once.
        now = datetime.now(UTC)
        await hub.send(
            ref(1, customer("003A1", "1", tier="silver"), issued_at=now),
            ref(2, customer("003B2", "1"), issued_at=now),
            ref(3, customer("003A1", "2", tier="gold"), issued_at=now),
            ref(4, item("4711", "1"), issued_at=now),
        )
        ack = await hub.ack_for({1, 2, 3, 4})
        assert ack.through == 4
        assert now >= asked

        def written() -> list[Path]:
            return sorted(folder.glob("customers_*.csv")) + sorted(folder.glob("item*.xml"))

        await wait_for(lambda: asyncio.sleep(0, len(written()) == 2))
        customers, items = written()
        assert [(r["customer_id"], r["tier"]) for r in _rows(customers)] == [
            ("003B2", "gold"),
            ("003A1", "gold"),
        ]
        xml = items.read_text()
        assert "http://www.nrf-arts.org/IXRetail/namespace/" in xml
        assert "<ItemID>4711</ItemID>" in xml
        assert "<RetailStoreID>0042</RetailStoreID>" in xml

        # Answered: the heartbeat stops asking.
        async def answered() -> bool:
            return bool(hub.heartbeats) and hub.heartbeats[-1].get("resync") == []

        await wait_for(answered, timeout=10)

        # The till asks on loopback.
        address = read_status_address(agent.config.data_dir)
        assert address is not None
        base = f"http://{address['listen']}"
        async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
            found = (await client.get("/customers", params={"loyalty_id": "L-003A1"})).json()
            assert [(c["customer_id"], c["email"]) for c in found["customers"]] == [
                ("003A1", "erika.003a1@example.org")
            ]
            reply = await client.get("/items/4711")
            assert reply.status_code == 200
            assert reply.json()["prices"][0]["amount"] == "18.90"
            assert (await client.get("/items/999")).status_code == 404

        # Field support asks for customers again; the heartbeat carries it until central
        # has sent customers queued after the request.
        shown = await asyncio.to_thread(_cli, "resync", "customers", "--config", str(config))
        assert shown.returncode == 0, shown.stderr

        async def asking_customers() -> bool:
            return bool(hub.heartbeats) and hub.heartbeats[-1].get("resync") == ["customers"]

        await wait_for(asking_customers, timeout=10)
        shown = await asyncio.to_thread(_cli, "status", "--config", str(config))
        assert "2 customer(s), 1 item(s)" in shown.stdout
        assert "RESYNC       customers asked of central" in shown.stdout
        assert shown.returncode == 1  # a request not answered yet is named
        assert "resync of customers asked of central" in shown.stderr

        await hub.send(
            ref(5, customer("003A1", "2", tier="gold"), issued_at=datetime.now(UTC)),
            ref(6, purge("003B2"), issued_at=datetime.now(UTC)),
        )
        await hub.ack_for({5, 6})

        async def purged() -> bool:
            assert agent.reference is not None
            return await agent.reference.store.customers_by_loyalty("L-003B2") == []

        await wait_for(purged, timeout=10)
        await wait_for(answered, timeout=10)
        # The customer file the POS had not taken no longer holds the purged customer.
        assert [r["customer_id"] for r in _rows(customers)] == ["003A1"]
        deletes = [
            r for p in folder.glob("customers_*.csv") for r in _rows(p) if r["action"] == "D"
        ]
        assert [r["customer_id"] for r in deletes] == ["003B2"]
        shown = await asyncio.to_thread(_cli, "status", "--config", str(config))
        assert "1 customer(s), 1 item(s)" in shown.stdout
        assert shown.returncode == 0, shown.stderr
