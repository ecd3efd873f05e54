"""Intake against a real Mosquitto: commit then ack, duplicates, spoofing, invalid
records, heartbeats, gap detection, and two relays sharing one PostgreSQL inbox.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from central.inbox import Inbox, open_inbox
from contract import AgentInfo, Heartbeat, encode_batch
from tests.support.mosquitto import Mosquitto
from tests.support.records import batch, sale_body, wait_for, wire
from tests.support.relay import TestAgent, central_config, running_relay


async def test_a_batch_is_committed_then_acked_and_a_repeat_is_acked_as_duplicates(
    mosquitto: Mosquitto, inbox_url: str, tmp_path: Path
) -> None:
    config = central_config(mosquitto.url, inbox_url, tmp_path)
    sent = batch("0042", [wire(s, sale_body("0042", f"T{s}")) for s in (1, 2, 3)])
    async with running_relay(config) as (_, inbox), TestAgent(mosquitto.port) as agent:
        await agent.publish("0042", encode_batch(sent))
        (ack,) = await wait_for(lambda: _now(agent.acks_for(sent.batch_id)))
        assert (ack.store, ack.committed, ack.duplicates, ack.rejected) == (
            "0042",
            [1, 2, 3],
            [],
            [],
        )
        assert (await inbox.stats())["records"] == 3
        await agent.publish("0042", encode_batch(sent))
        acks = await wait_for(lambda: _now(agent.acks_for(sent.batch_id)[1:]))
        assert (acks[0].committed, acks[0].duplicates) == ([], [1, 2, 3])
        stats = await inbox.stats()
        assert (stats["records"], stats["duplicates"]) == (3, 3)
        (store,) = await inbox.stores()
        assert (store.agent_id, store.contiguous_seq) == ("agent-0042", 3)


async def test_a_spoofed_store_is_refused_counted_and_never_acked(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path)
    spoof = batch("0043", [wire(1, sale_body("0043", "T1"))])
    honest = batch("0042", [wire(1, sale_body("0042", "T1"))])
    async with running_relay(config) as (intake, inbox), TestAgent(mosquitto.port) as agent:
        await agent.publish("0042", encode_batch(spoof))  # topic of 0042, envelope of 0043
        await agent.publish("0042", encode_batch(honest))
        await wait_for(lambda: _now(agent.acks_for(honest.batch_id)))
        stats = await inbox.stats()
        assert (stats["refused"], stats["spoofed"], stats["records"]) == (1, 1, 1)
        assert intake.counters["spoofed"] == 1
        assert agent.acks_for(spoof.batch_id) == []
        assert await inbox.record_by_key(str(sale_body("0043", "T1")["key"])) is None


async def test_an_invalid_record_is_acked_as_rejected_and_kept_as_an_exception(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path)
    broken = sale_body("0042", "T2", total="12.345")
    broken["customer"] = {"email": "jane@example.com"}
    sent = batch("0042", [wire(1, sale_body("0042", "T1")), wire(2, broken)])
    async with running_relay(config) as (_, inbox), TestAgent(mosquitto.port) as agent:
        await agent.publish("0042", encode_batch(sent))
        (ack,) = await wait_for(lambda: _now(agent.acks_for(sent.batch_id)))
        assert ack.committed == [1]
        (rejection,) = ack.rejected
        assert (rejection.seq, rejection.key) == (2, broken["key"])
        assert "12.345 has more decimals than EUR allows" in rejection.reason
        assert ack.settled() == {1, 2}
        (item,) = await inbox.exceptions()
        assert (item.seq, item.key) == (2, broken["key"])
        assert item.payload is not None
        assert item.payload["body"]["total"] == "12.345"
        stats = await inbox.stats()
        assert (stats["records"], stats["exceptions"], stats["gaps"]) == (1, 1, 0)
    assert any("Records rejected" in r.getMessage() for r in caplog.records)
    assert all("jane@example.com" not in str(vars(r)) for r in caplog.records)


async def test_heartbeats_and_last_wills_feed_the_fleet_registry(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path)
    beat = Heartbeat(
        store="0042",
        state="online",
        agent=AgentInfo(id="bo-1", version="0.1.0"),
        backlog_rows=3,
        orders_waiting=2,
        orders_alert=1,
    )
    async with running_relay(config) as (_, inbox), TestAgent(mosquitto.port) as agent:
        await agent.publish("0042", beat.model_dump_json(by_alias=True).encode(), "status")
        (store,) = await wait_for(inbox.stores)
        assert (store.state, store.agent_version, store.backlog_rows) == ("online", "0.1.0", 3)
        # Orders the store holds and has not written to the POS, as its heartbeat said.
        assert (store.orders_waiting, store.orders_alert) == (2, 1)
        offline = Heartbeat(store="0042", state="offline")
        await agent.publish("0042", offline.model_dump_json(by_alias=True).encode(), "status")
        await wait_for(lambda: _offline(inbox))
        (store,) = await inbox.stores()
        assert (store.orders_waiting, store.orders_alert) == (2, 1)  # last reported, kept
        assert (await inbox.stats())["downlink"]["0042"]["orders_waiting"] == 2


_LEASE = timedelta(minutes=5)


async def _offline(inbox: Inbox) -> bool:
    stores = await inbox.stores()
    return bool(stores) and stores[0].state == "offline"


async def test_gap_detection_asks_the_store_for_the_missing_range(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = central_config(
        mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path, gap_grace_seconds=0.5
    )
    first = batch("0042", [wire(s, sale_body("0042", f"T{s}")) for s in (1, 2)])
    later = batch("0042", [wire(s, sale_body("0042", f"T{s}")) for s in (6, 7)])
    async with running_relay(config) as (_, inbox), TestAgent(mosquitto.port) as agent:
        await agent.publish("0042", encode_batch(first))
        await agent.publish("0042", encode_batch(later))
        await wait_for(lambda: _now(agent.acks_for(later.batch_id)))
        (gap,) = await inbox.gaps("0042")
        assert (gap.from_seq, gap.to_seq) == (3, 5)
        assert (await inbox.stats())["missing"] == 3
        ((store, command),) = await wait_for(lambda: _now(agent.commands), timeout=10)
        assert store == "0042"
        assert (command.command, command.from_seq, command.to_seq) == ("resend", 3, 5)
        # Asked again only after another grace period; filled in, it is not asked again.
        await wait_for(lambda: _now(agent.commands[1:]), timeout=10)
        resent = batch("0042", [wire(s, sale_body("0042", f"T{s}")) for s in (3, 4, 5)])
        await agent.publish("0042", encode_batch(resent))
        await wait_for(lambda: _now(agent.acks_for(resent.batch_id)))
        assert await inbox.gaps() == []
        asked = len(agent.commands)
        await asyncio.sleep(1.2)
        assert len(agent.commands) == asked


async def test_two_relays_on_one_postgres_split_the_load_and_commit_nothing_twice(
    mosquitto: Mosquitto, pg_url: str, tmp_path: Path
) -> None:
    configs = [
        central_config(mosquitto.url, pg_url, tmp_path, relay_id=name, shared_group="relays")
        for name in ("relay-a", "relay-b")
    ]
    stores = [f"S{n:03d}" for n in range(20)]
    batches = [
        batch(store, [wire(s, sale_body(store, f"T{s}")) for s in range(start, start + 5)])
        for store in stores
        for start in (1, 6, 11)
    ]
    async with (
        running_relay(configs[0]) as (one, inbox_a),
        running_relay(configs[1]) as (two, inbox_b),
        TestAgent(mosquitto.port) as agent,
    ):
        for sent in batches:
            await agent.publish(sent.store, encode_batch(sent))
        # The agent re-sends a third of them, as after a lost ack.
        for sent in batches[::3]:
            await agent.publish(sent.store, encode_batch(sent))
        expected = len(batches) + len(batches[::3])
        await wait_for(lambda: _now(len(agent.acks) >= expected), timeout=30)
        assert one.counters["batches"] > 0
        assert two.counters["batches"] > 0
        assert one.counters["batches"] + two.counters["batches"] == expected
        committed = one.counters["committed"] + two.counters["committed"]
        assert committed == 20 * 15
        stats = await inbox_a.stats()
        assert (stats["records"], stats["duplicates"], stats["stores"]) == (300, 100, 20)
        assert stats["gaps"] == 0

        async def drain(inbox: Inbox, relay: str) -> list[str]:
            keys: list[str] = []
            while work := await inbox.claim(9, relay, _LEASE):
                keys += [r.key for r in work]
                await asyncio.sleep(0)
            return keys

        a, b = await asyncio.gather(drain(inbox_a, "relay-a"), drain(inbox_b, "relay-b"))
        assert len(a) + len(b) == 300
        assert not set(a) & set(b)
    check = await open_inbox(pg_url)
    try:
        assert (await check.stats())["records"] == 300
    finally:
        await check.close()


async def _now(value: object) -> object:
    """A value as an awaitable, for `wait_for` over state the test agent collects."""
    return value
