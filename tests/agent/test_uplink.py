"""The uplink against a real Mosquitto and the real relay: offline buffering then drain,
broker restarts with and without its queue, re-send after a missing ack, resend commands,
and batches that respect the size limit."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import SecretStr

from agent.config import AgentConfig, OutboxSettings, UplinkSettings
from agent.outbox import Outbox
from agent.sources import IngestFile
from agent.uplink import Uplink
from central.inbox import Inbox
from common.settings import BrokerSettings
from contract import (
    Ack,
    Command,
    Heartbeat,
    Transaction,
    decode_batch,
    encode_records,
    make_key,
    record_json,
    topic,
)
from tests.support.mosquitto import Mosquitto
from tests.support.records import wait_for
from tests.support.relay import central_config, running_relay

STORE = "0042"
DAY = date(2024, 5, 1)


def sale(n: int, lines: int = 1) -> Transaction:
    return Transaction.model_validate(
        {
            "kind": "sale",
            "key": make_key("sale", STORE, "1", DAY, str(n)),
            "store": STORE,
            "business_date": DAY.isoformat(),
            "occurred_at": "2024-05-01T10:15:00+02:00",
            "source": {"file": "poslog.xml", "position": str(n)},
            "register": "1",
            "transaction_id": str(n),
            "currency": "EUR",
            "total": f"{lines * 2}.50",
            "lines": [
                {"number": str(i), "sku": f"SKU-{random.randrange(10**9)}", "amount": "2.50"}
                for i in range(lines)
            ],
            "tenders": [{"type": "cash", "amount": f"{lines * 2}.50"}],
        }
    )


def agent_config(tmp_path: Path, broker_url: str, **uplink: Any) -> AgentConfig:
    settings = {
        "ack_timeout_seconds": 3,
        "reconnect_min_seconds": 0.1,
        "reconnect_max_seconds": 0.5,
        **uplink,
    }
    protocol = settings.pop("protocol", "5")
    return AgentConfig(
        store=STORE,
        agent_id="till-pc",
        data_dir=tmp_path,
        broker=BrokerSettings(url=broker_url, protocol=protocol),
        uplink=UplinkSettings(**settings),
    )


async def fill(outbox: Outbox, count: int, *, start: int = 1, lines: int = 1) -> None:
    for first in range(start, start + count, 1000):
        last = min(first + 1000, start + count)
        items = iter([sale(n, lines) for n in range(first, last)])
        name = f"f{first}"
        await outbox.ingest(IngestFile("pos", name, name, name, 1), items)


@contextlib.asynccontextmanager
async def running_uplink(config: AgentConfig, outbox: Outbox) -> AsyncIterator[Uplink]:
    async def status(connected: bool) -> Heartbeat:
        return Heartbeat(
            store=STORE, state="online", connected=connected, backlog_rows=outbox.unacked_rows
        )

    uplink = Uplink(config, outbox, status)
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(stop))
    try:
        yield uplink
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await Outbox.open(
        tmp_path / "outbox.db", OutboxSettings(), key_file=tmp_path / "outbox.key"
    )
    try:
        yield box
    finally:
        await box.close()


async def drained(outbox: Outbox, inbox: Inbox, expected: int, timeout: float = 60) -> None:
    async def done() -> bool:
        return outbox.unacked_rows == 0

    await wait_for(done, timeout=timeout, interval=0.1)
    stats = await inbox.stats()
    assert stats["records"] == expected  # every record, once


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_records_buffered_offline_drain_when_the_broker_returns(
    tmp_path: Path, mosquitto: Mosquitto, outbox: Outbox, protocol: str
) -> None:
    relay = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c")
    async with running_relay(relay) as (intake, inbox):
        mosquitto.stop()
        config = agent_config(tmp_path, mosquitto.url, protocol=protocol)
        async with running_uplink(config, outbox) as uplink:
            await fill(outbox, 3000)  # intake goes on while the broker is away
            await asyncio.sleep(0.5)
            assert not uplink.connected.is_set()
            assert (await outbox.stats()).pending == 3000
            mosquitto.start()
            await drained(outbox, inbox, 3000)
            assert uplink.records_sent >= 3000
        stats = await outbox.stats()
        assert (stats.acked, stats.pending, stats.sent) == (3000, 0, 0)
        assert intake.counters["committed"] == 3000


async def test_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, outbox: Outbox
) -> None:
    relay = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c")
    await fill(outbox, 8000)
    async with running_relay(relay) as (_, inbox):
        config = agent_config(tmp_path, mosquitto.url, batch_max_records=50, window=4)
        async with running_uplink(config, outbox):

            async def some_acked() -> bool:
                return (await outbox.stats()).acked > 500

            await wait_for(some_acked, timeout=30)
            mosquitto.restart()
            await drained(outbox, inbox, 8000, timeout=90)


async def test_a_broker_that_drops_its_queue_is_covered_by_resending(
    tmp_path: Path, outbox: Outbox
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", persistence=False)
    broker.start()
    try:
        relay = central_config(broker.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c")
        await fill(outbox, 6000)
        async with running_relay(relay) as (_, inbox):
            config = agent_config(tmp_path, broker.url, batch_max_records=50, window=8)
            async with running_uplink(config, outbox) as uplink:

                async def some_acked() -> bool:
                    return (await outbox.stats()).acked > 300

                await wait_for(some_acked, timeout=30)
                broker.kill()  # whatever it held is gone
                broker.start()
                await drained(outbox, inbox, 6000, timeout=90)
                assert uplink.records_sent > 6000  # some went twice; central kept one
    finally:
        broker.stop()


async def test_a_batch_central_never_acknowledges_is_sent_again(
    tmp_path: Path, mosquitto: Mosquitto, outbox: Outbox
) -> None:
    await fill(outbox, 10)
    config = agent_config(tmp_path, mosquitto.url, ack_timeout_seconds=0.5)
    async with running_uplink(config, outbox) as uplink:  # no relay: nobody acknowledges

        async def resent() -> bool:
            return uplink.resent >= 10

        await wait_for(resent, timeout=20)
    rows = await outbox.claim_pending(100)
    assert all(r.attempts >= 3 for r in rows)  # still held, never dropped


async def test_central_can_ask_for_a_range_again(
    tmp_path: Path, mosquitto: Mosquitto, outbox: Outbox
) -> None:
    relay = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c")
    await fill(outbox, 100)
    config = agent_config(tmp_path, mosquitto.url)
    async with running_relay(relay) as (intake, inbox), running_uplink(config, outbox):
        await drained(outbox, inbox, 100)
        command = Command(command="resend", from_seq=11, to_seq=20, issued_at=datetime.now(UTC))
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish(
                topic("tillbridge/v1", STORE, "command"),
                command.model_dump_json(by_alias=True),
                qos=1,
            )

        async def duplicates_seen() -> bool:
            return intake.counters["duplicates"] >= 10

        await wait_for(duplicates_seen, timeout=20)
        await drained(outbox, inbox, 100)


async def test_heartbeat_is_retained_and_the_last_will_says_offline(
    tmp_path: Path, mosquitto: Mosquitto, outbox: Outbox
) -> None:
    status_topic = topic("tillbridge/v1", STORE, "status")
    config = agent_config(tmp_path, mosquitto.url)
    async with running_uplink(config, outbox) as uplink:
        await asyncio.wait_for(uplink.connected.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.subscribe(status_topic, qos=1)
            message = await asyncio.wait_for(anext(aiter(client.messages)), 10)
            assert message.retain
            assert isinstance(message.payload, bytes)
            assert Heartbeat.model_validate_json(message.payload).state == "online"
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.subscribe(status_topic, qos=1)
        message = await asyncio.wait_for(anext(aiter(client.messages)), 10)
        assert isinstance(message.payload, bytes)
        assert Heartbeat.model_validate_json(message.payload).state == "offline"


async def test_batches_stay_under_the_byte_limit_and_decode(tmp_path: Path, outbox: Outbox) -> None:
    await fill(outbox, 60, lines=40)  # large transactions with random SKUs compress badly
    config = agent_config(tmp_path, "mqtt://127.0.0.1:1", batch_max_bytes=8192)
    uplink = Uplink(config, outbox, status=None)  # type: ignore[arg-type]
    rows = await outbox.claim_pending(500)
    parts = await uplink._split(rows)
    assert len(parts) > 1
    seen = []
    for part_rows, payload, batch_id in parts:
        assert len(payload) <= 8192
        batch = decode_batch(payload)
        assert batch.batch_id == batch_id
        assert [r.seq for r in batch.records] == [r.seq for r in part_rows]
        assert [r.record().key for r in batch.records] == [r.key for r in part_rows]
        seen.extend(r.seq for r in batch.records)
    assert seen == [r.seq for r in rows]  # FIFO by seq, none left out


def test_encoded_batch_matches_the_contract() -> None:
    record = sale(7)
    wire = record_json(
        1,
        record.key,
        "sale",
        "c0ffee",
        record.occurred_at.isoformat(),
        record.source.model_dump_json(),
        record.model_dump_json(),
    )
    payload = encode_records(
        [wire.encode()],
        store=STORE,
        agent_id="till-pc",
        agent_version="0.1.0",
        batch_id="b1",
        sent_at=datetime.now(UTC),
    )
    batch = decode_batch(payload)
    assert batch.store == STORE
    assert batch.agent.id == "till-pc"
    assert batch.records[0].record() == record


async def test_acks_sent_while_the_agent_is_away_wait_in_its_session(
    tmp_path: Path, mosquitto: Mosquitto, outbox: Outbox
) -> None:
    await fill(outbox, 10)
    config = agent_config(tmp_path, mosquitto.url, ack_timeout_seconds=600)
    async with running_uplink(config, outbox) as uplink:  # no relay: nothing acknowledges

        async def all_sent() -> bool:
            return uplink.records_sent == 10

        await wait_for(all_sent, timeout=15)
    # Central acknowledges while the agent is away; only its persistent session can keep it.
    # An ack of an earlier outbox's batch (rebuilt since: its seqs named other records)
    # must settle nothing; the ack of this outbox's batch settles its rows.
    stale = Ack(store=STORE, batch_id="0123456789abcdef-b1", committed=list(range(1, 11)))
    ack = Ack(store=STORE, batch_id=f"{outbox.epoch}-b-while-away", committed=list(range(1, 6)))
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="central-test") as client:
        for each in (stale, ack):
            await client.publish(
                topic("tillbridge/v1", STORE, "ack"), each.model_dump_json(), qos=1
            )
    assert outbox.unacked_rows == 10
    async with running_uplink(config, outbox):

        async def acked() -> bool:
            return outbox.unacked_rows == 5

        await wait_for(acked, timeout=15)
        await asyncio.sleep(0.5)
        assert outbox.unacked_rows == 5  # the earlier outbox's ack settled nothing


async def test_credentials_come_from_the_secret_file(tmp_path: Path, outbox: Outbox) -> None:
    from agent.config import load_agent_config
    from central.provision import set_password
    from tests.support.mosquitto import Mosquitto as Broker

    passwords = tmp_path / "passwd"
    set_password(passwords, STORE, "right-password")
    broker = Broker(
        tmp_path / "mosquitto", extra_config=f"allow_anonymous false\npassword_file {passwords}"
    )
    broker.start()
    try:
        relay = central_config(broker.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c")
        set_password(passwords, "relay", "relay-password")
        relay.broker.username = "relay"
        relay.broker.password = SecretStr("relay-password")
        broker.restart()  # read the relay's entry too
        await fill(outbox, 20)
        for secret, arrives in (("wrong-password", False), ("right-password", True)):
            (tmp_path / "mqtt_password").write_text(secret + "\n")
            (tmp_path / "agent.toml").write_text(
                f'[agent]\nstore = "{STORE}"\ndata_dir = "{tmp_path}"\n'
                f'[agent.broker]\nurl = "{broker.url}"\nusername = "{STORE}"\n'
                f'password_file = "{tmp_path / "mqtt_password"}"\n'
                "[agent.uplink]\nreconnect_min_seconds = 0.1\nreconnect_max_seconds = 0.5\n"
            )
            config = load_agent_config(tmp_path / "agent.toml")
            async with running_relay(relay) as (_, inbox), running_uplink(config, outbox) as up:
                if arrives:
                    await drained(outbox, inbox, 20)
                else:
                    await asyncio.sleep(1.5)
                    assert not up.connected.is_set()
                    assert up.last_error is not None
                    assert "wrong-password" not in up.last_error
                    assert outbox.unacked_rows == 20
    finally:
        broker.stop()
