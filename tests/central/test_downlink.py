"""The relay's downlink against a real Mosquitto: a store receives its queued orders and
its answer settles them; an unanswered message is sent again after the interval; a store
coming online gets its pending messages at once; an answer from another store's topic
settles nothing; and `tillbridge-central run` sends the way down beside the intake.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt

from central.config import CentralConfig, DownlinkSettings
from central.downlink import DownlinkSender, batches
from central.inbox import Inbox, open_inbox
from contract import (
    DEFAULT_PREFIX,
    DownAck,
    DownBatch,
    Heartbeat,
    OnlineOrder,
    decode_down,
    encode_down,
)
from tests.support.mosquitto import Mosquitto
from tests.support.online_orders import order, queued
from tests.support.records import wait_for
from tests.support.relay import central_config


class TestStore:
    """Acts as a store's agent on the broker: keeps each batch that comes down to it and
    answers when told to."""

    __test__ = False

    def __init__(self, port: int, store: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.port = port
        self.store = store
        self.prefix = prefix
        self.batches: list[DownBatch] = []
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TestStore:
        self._client = aiomqtt.Client(
            "127.0.0.1", self.port, identifier=f"test-store-{uuid.uuid4().hex[:8]}"
        )
        await self._client.__aenter__()
        await self._client.subscribe(f"{self.prefix}/{self.store}/down", qos=1)
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.__aexit__(None, None, None)

    async def _collect(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            assert isinstance(message.payload, bytes)
            self.batches.append(decode_down(message.payload))

    def seqs(self) -> list[list[int]]:
        return [[m.seq for m in b.messages] for b in self.batches]

    async def answer(
        self, batch: DownBatch, *, through: int = 0, topic_store: str | None = None
    ) -> None:
        """Publish a DownAck for `batch` on `topic_store`'s answer topic (the store's own
        unless told otherwise)."""
        assert self._client is not None
        ack = DownAck(
            store=batch.store,
            batch_id=batch.batch_id,
            committed=[m.seq for m in batch.messages],
            through=through,
        )
        name = f"{self.prefix}/{topic_store or self.store}/downack"
        await self._client.publish(name, encode_down(ack), qos=1)

    async def status(self, state: str) -> None:
        assert self._client is not None
        beat = Heartbeat(store=self.store, state=state)  # type: ignore[arg-type]
        name = f"{self.prefix}/{self.store}/status"
        await self._client.publish(name, beat.model_dump_json(by_alias=True), qos=1)


def _config(mosquitto: Mosquitto, inbox_url: str, tmp_path: Path, **down: Any) -> CentralConfig:
    config = central_config(mosquitto.url, inbox_url, tmp_path)
    settings = {"resend_seconds": 30.0, "poll_seconds": 0.1, **down}
    return config.model_copy(update={"downlink": DownlinkSettings(**settings)})


@contextlib.asynccontextmanager
async def running_downlink(
    config: CentralConfig, *first: OnlineOrder
) -> AsyncIterator[tuple[DownlinkSender, Inbox]]:
    """A sender on its own inbox, connected and subscribed, with `first` queued before it
    starts."""
    inbox = await open_inbox(config.inbox_url, relay_id=config.relay_id)
    for body in first:
        await inbox.enqueue(*queued(body))
    sender = DownlinkSender(config, inbox)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        await asyncio.wait_for(sender.connected.wait(), 10)
        yield sender, inbox
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await inbox.close()


async def test_a_store_receives_its_orders_and_its_answer_settles_them(
    mosquitto: Mosquitto, inbox_url: str, tmp_path: Path
) -> None:
    config = _config(mosquitto, inbox_url, tmp_path)
    async with (
        TestStore(mosquitto.port, "0042") as store,
        TestStore(mosquitto.port, "0043") as other,
        running_downlink(config, *(order("0042", n) for n in ("A1", "A2", "A3"))) as (
            sender,
            inbox,
        ),
    ):
        (batch,) = await wait_for(lambda: _now(store.batches))
        assert batch.store == "0042"
        assert [m.seq for m in batch.messages] == [1, 2, 3]
        assert [m.key for m in batch.messages] == [f"order:shop:id-A{n}:1" for n in (1, 2, 3)]
        first = batch.messages[0].read()
        assert isinstance(first, OnlineOrder)
        assert first == order("0042", "A1")
        await store.answer(batch, through=3)

        async def settled() -> bool:
            return await inbox.pending_down("0042") == []

        await wait_for(settled)
        (summary,) = await inbox.downlink_summary()
        assert (summary.pending, summary.delivered, summary.oldest_waiting) == (0, 3, None)
        assert sender.counters["settled"] == 3
        assert other.batches == []  # another store's topic carries none of it


async def test_an_unanswered_message_is_sent_again_after_the_interval(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = _config(mosquitto, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path, resend_seconds=1)
    async with (
        TestStore(mosquitto.port, "0042") as store,
        running_downlink(config) as (sender, inbox),
    ):
        await inbox.enqueue(*queued(order("0042", "A1")))
        await wait_for(lambda: _now(store.batches))
        started = asyncio.get_running_loop().time()
        await wait_for(lambda: _now(store.batches[1:]))
        waited = asyncio.get_running_loop().time() - started
        assert waited >= 0.8, f"sent again after {waited:.2f} s, before the 1 s interval"
        assert store.seqs()[:2] == [[1], [1]]

        async def counted() -> bool:
            (row,) = await inbox.pending_down("0042")
            return row.sends >= 2 and sender.counters["resent"] >= 1

        await wait_for(counted)  # marked once the broker has it, just after it arrives
        await store.answer(store.batches[-1])
        await wait_for(lambda: _empty(inbox, "0042"))
        seen = len(store.batches)
        await asyncio.sleep(1.5)
        assert len(store.batches) == seen  # answered: never sent again


async def test_a_store_coming_online_gets_its_pending_messages_at_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = _config(mosquitto, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path)
    async with (
        TestStore(mosquitto.port, "0042") as store,
        running_downlink(config) as (sender, inbox),
    ):
        await inbox.enqueue(*queued(order("0042", "A1")))
        await wait_for(lambda: _now(store.batches))
        await store.status("offline")
        await wait_for(lambda: _now(sender._states.get("0042") == "offline"))
        await inbox.enqueue(*queued(order("0042", "A2")))
        await asyncio.sleep(0.6)
        assert store.seqs() == [[1]]  # nothing is sent to a store known to be away
        await store.status("online")
        # Well within the 30 s interval: seq 1 again (unanswered), and seq 2.
        await wait_for(lambda: _now({1, 2} <= {n for b in store.seqs()[1:] for n in b}), timeout=5)


async def test_an_answer_from_another_stores_topic_settles_nothing(
    mosquitto: Mosquitto, tmp_path: Path, caplog: Any
) -> None:
    config = _config(mosquitto, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path)
    async with (
        TestStore(mosquitto.port, "0042") as store,
        running_downlink(config) as (sender, inbox),
    ):
        await inbox.enqueue(*queued(order("0042", "A1")))
        (batch,) = await wait_for(lambda: _now(store.batches))
        # Store 0043 answers, on its own topic, for 0042's batch.
        await store.answer(batch, through=1, topic_store="0043")
        await wait_for(lambda: _now(sender.counters["spoofed_answers"] == 1))
        assert [r.seq for r in await inbox.pending_down("0042")] == [1]
        assert sender.counters["settled"] == 0
        stats = await inbox.stats()
        assert (stats["spoofed"], stats["downlink"]["0042"]["pending"]) == (1, 1)
        assert any(
            getattr(r, "event", None) == "security" and getattr(r, "topic_store", None) == "0043"
            for r in caplog.records
        )
        # The store's own answer still settles it.
        await store.answer(batch)
        await wait_for(lambda: _empty(inbox, "0042"))


def test_a_batch_stays_under_the_size_limit_and_the_message_count() -> None:
    from central.inbox import DownRow
    from contract import order_key

    body = order("0042", "A1")
    rows = [
        DownRow(
            store="0042",
            seq=n,
            kind="order",
            key=order_key(body),
            body=body.model_dump_json(),
            queued_at=body.created_at,
        )
        for n in range(1, 8)
    ]
    assert [[m.seq for m in b.messages] for b, _ in batches("0042", rows, 3)] == [
        [1, 2, 3],
        [4, 5, 6],
        [7],
    ]


BIN = Path(sys.executable).parent / "tillbridge-central"


async def test_the_relay_process_sends_the_way_down(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = tmp_path / "central.toml"
    config.write_text(
        "[central]\n"
        'relay_id = "relay-down"\n'
        f'data_dir = "{tmp_path}"\n'
        "[central.broker]\n"
        f'url = "{mosquitto.url}"\n'
        "[central.inbox]\n"
        f'url = "sqlite:///{tmp_path / "inbox.db"}"\n'
        "[central.delivery]\n"
        "enabled = false\n"
        "[central.web]\n"
        "enabled = false\n"
    )
    inbox = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    try:
        await inbox.enqueue(*queued(order("0042", "A1")))
    finally:
        await inbox.close()
    relay: subprocess.Popen[bytes] | None = None
    try:
        async with TestStore(mosquitto.port, "0042") as store:
            relay = subprocess.Popen(
                [str(BIN), "run", "--config", str(config)],
                env=dict(os.environ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            (batch,) = await wait_for(lambda: _now(store.batches), timeout=20)
            assert [m.seq for m in batch.messages] == [1]
            await store.answer(batch)
            inbox = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
            try:
                await wait_for(lambda: _empty(inbox, "0042"), timeout=20)
            finally:
                await inbox.close()
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(15) == 0
    finally:
        if relay is not None and relay.poll() is None:
            relay.kill()
            relay.wait()


async def _now(value: Any) -> Any:
    return value


async def _empty(inbox: Inbox, store: str) -> bool:
    return await inbox.pending_down(store) == []
