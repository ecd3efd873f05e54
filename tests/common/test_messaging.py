"""The messaging seam on the broker in memory: the reconnect loop, its backoff, what the
fake broker keeps (sessions, retained messages, wills), and both ends of Tillbridge —
the agent's uplink and the relay's intake — talking through it with real SQLite on
either side. Delivery over a real broker is proved in test_messaging_mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from agent.config import OutboxSettings
from agent.outbox import Outbox
from agent.uplink import Uplink
from central.inbox import open_inbox
from central.intake import Intake
from common.messaging import (
    Backoff,
    Connection,
    Message,
    MessagingError,
    Will,
    keep_connected,
)
from common.messaging.memory import MemoryBroker, matches
from contract import Heartbeat, topic
from tests.agent.test_uplink import STORE, agent_config, fill
from tests.support.records import wait_for
from tests.support.relay import central_config


def test_backoff_doubles_with_jitter_up_to_the_longest_and_starts_over() -> None:
    random.seed(7)
    backoff = Backoff(1.0, 8.0)
    waits = [backoff.next() for _ in range(6)]
    steps = [1, 2, 4, 8, 8, 8]
    for wait, step in zip(waits, steps, strict=True):
        assert step / 2 <= wait <= step
    assert len({round(w, 6) for w in waits}) == len(waits)  # jittered: no two alike
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


@pytest.mark.parametrize(
    ("topic_filter", "name", "expected"),
    [
        ("a/+/records", "a/0042/records", True),
        ("a/+/records", "a/0042/ack", False),
        ("a/#", "a/0042/ack", True),
        ("a/#", "a", True),
        ("a/+", "a/b/c", False),
        ("a/b", "a/b", True),
    ],
)
def test_topic_filters_match_as_mqtt_says(topic_filter: str, name: str, expected: bool) -> None:
    assert matches(topic_filter, name) is expected


async def test_a_session_is_kept_and_a_will_sent_only_for_a_vanished_client() -> None:
    broker = MemoryBroker()
    will = Will("s/0042/status", b"offline")
    sender = broker.transport("sender")
    receiver = broker.transport("receiver", will=will)
    async with receiver.connect() as conn:
        await conn.subscribe("s/+/ack")
    async with sender.connect() as out:
        await out.publish("s/0042/ack", b"while away")  # the receiver is gone: kept for it
        await out.publish("s/0042/status", b"online", retain=True)
    assert broker.retained["s/0042/status"] == b"online"  # a clean leave sent no will
    async with receiver.connect() as conn:
        messages = conn.messages()
        assert await anext(messages) == Message("s/0042/ack", b"while away")
        broker.drop()
        with pytest.raises(MessagingError):
            await anext(messages)
    assert broker.retained["s/0042/status"] == b"offline"  # vanished: its will
    with pytest.raises(MessagingError):
        await conn.publish("s/0042/ack", b"too late")


async def test_one_member_of_a_shared_subscription_gets_each_message() -> None:
    broker = MemoryBroker()
    conns = []
    stack = contextlib.AsyncExitStack()
    async with stack:
        for name in ("relay-a", "relay-b"):
            conn = await stack.enter_async_context(broker.transport(name).connect())
            await conn.subscribe("$share/relays/t/+/records")
            conns.append(conn)
        async with broker.transport("store").connect() as store:
            for n in range(10):
                await store.publish(f"t/{n}/records", b"x")
    counts = [broker.sessions[n].queue.qsize() for n in ("relay-a", "relay-b")]
    assert sum(counts) == 10
    assert min(counts) > 0


async def _collect(
    broker: MemoryBroker, stop: asyncio.Event, got: list[Message], waits: list[float]
) -> None:
    async def on_connect(conn: Connection) -> None:
        await conn.subscribe("t/#")

    async def session(conn: Connection) -> None:
        reading = asyncio.ensure_future(_read_into(conn, got))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (reading, stopping):
            task.cancel()
        if reading.done() and not reading.cancelled() and reading.exception():
            raise reading.exception()  # type: ignore[misc]

    async def on_lost(exc: MessagingError, wait: float) -> None:
        waits.append(wait)

    await keep_connected(
        broker.transport("collector"),
        stop,
        backoff=Backoff(0.01, 0.08),
        on_connect=on_connect,
        session=session,
        on_lost=on_lost,
    )


async def _read_into(conn: Connection, got: list[Message]) -> None:
    async for message in conn.messages():
        got.append(message)


async def test_the_loop_connects_again_and_the_session_keeps_what_came_meanwhile() -> None:
    broker = MemoryBroker()
    stop = asyncio.Event()
    got: list[Message] = []
    waits: list[float] = []
    task = asyncio.create_task(_collect(broker, stop, got, waits))
    await wait_for(_true(lambda: broker.connects == 1), timeout=5)
    broker.down = True
    broker.drop()
    # Down: each attempt is refused, and the waits grow (jittered) up to the longest.
    await wait_for(_true(lambda: len(waits) >= 5), timeout=5)
    assert all(0.005 <= w <= 0.08 for w in waits)
    assert max(waits[3:]) > min(waits[:1])
    # A message for the collector while it is away waits in its session.
    broker.route(Message("t/1", b"meanwhile"))
    broker.down = False
    await wait_for(_true(lambda: got == [Message("t/1", b"meanwhile")]), timeout=5)
    assert broker.connects == 2
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_stop_is_not_held_by_a_connect_that_never_answers() -> None:
    class Silent:
        @contextlib.asynccontextmanager
        async def connect(self) -> AsyncIterator[Connection]:
            await asyncio.Event().wait()  # a TLS port spoken to in plain MQTT
            yield None  # type: ignore[misc]  # pragma: no cover

    stop = asyncio.Event()

    async def never(conn: Connection) -> None:  # pragma: no cover
        raise AssertionError("no connection was made")

    task = asyncio.create_task(
        keep_connected(Silent(), stop, backoff=Backoff(0.1, 1), on_connect=never, session=never)
    )
    await asyncio.sleep(0.2)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 1)


def _true(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return check()

    return probe


async def test_uplink_and_intake_meet_through_the_seam(tmp_path: Path) -> None:
    """Both programs on the broker in memory: every record is committed once and settled,
    across a broker that goes away mid-stream; the agent's last will reaches the relay."""
    broker = MemoryBroker()
    relay_config = central_config("mqtt://127.0.0.1:1", f"sqlite:///{tmp_path / 'i.db'}", tmp_path)
    inbox = await open_inbox(relay_config.inbox_url, relay_id=relay_config.relay_id)
    intake = Intake(relay_config, inbox, transport=broker.transport("relay"))
    config = agent_config(tmp_path, "mqtt://127.0.0.1:1")
    outbox = await Outbox.open(tmp_path / "o.db", OutboxSettings(), key_file=tmp_path / "k")
    prefix = config.broker.topic_prefix
    will = Will(topic(prefix, STORE, "status"), b'{"store":"0042","state":"offline"}')

    async def status(connected: bool) -> Heartbeat:
        return Heartbeat(store=STORE, state="online", connected=connected)

    uplink = Uplink(config, outbox, status, transport=broker.transport("agent", will=will))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(intake.run(stop)), asyncio.create_task(uplink.run(stop))]
    try:
        await fill(outbox, 300)
        uplink.notify()

        async def some_in() -> bool:
            return bool((await inbox.stats())["records"] > 0)

        await wait_for(some_in, timeout=10, interval=0.05)
        broker.drop()  # mid-stream: both ends connect again by themselves
        await fill(outbox, 200, start=301)
        uplink.notify()

        async def settled() -> bool:
            return outbox.unacked_rows == 0

        await wait_for(settled, timeout=30, interval=0.05)
        stats = await inbox.stats()
        assert stats["records"] == 500  # every record, once
        assert broker.sessions["relay"].live is not None
        assert any(m.topic == will.topic and m.payload == will.payload for m in broker.published)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
        await outbox.close()
        await inbox.close()
