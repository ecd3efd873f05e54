"""The uplink: the outbox's records to central over MQTT, acknowledged end to end.

A PUBACK only means the broker has a batch; a row is let go only when central's ack
on `{prefix}/{store}/ack` names its seq, which central sends after its own commit.
Batches are gzip JSON, QoS 1, oldest seq first, many in flight at once so a week's
backlog drains at full speed. A batch central has not acknowledged in time is sent
again; central dedupes by key. The connection comes back by itself (exponential
backoff with jitter) and never holds up intake.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from agent._probe import scheme_mismatch
from agent._version import __version__
from agent.config import AgentConfig
from agent.outbox import Outbox, OutRow
from common.logs import bind
from common.messaging import (
    Backoff,
    ClientOptions,
    Connection,
    MessagingError,
    MqttTransport,
    Transport,
    Will,
    keep_connected,
    options_for,
)
from contract import (
    Ack,
    AgentInfo,
    Batch,
    Command,
    Heartbeat,
    Release,
    encode_batch,
    encode_down,
    encode_records,
    topic,
)

if TYPE_CHECKING:  # the downlink is loaded by the daemon only when it is on
    from agent.downlink import Downlink

__all__ = ["Uplink", "offline_status"]

log = logging.getLogger("tillbridge.agent.uplink")

StatusSource = Callable[[bool], Awaitable[Heartbeat]]


def offline_status(store: str) -> bytes:
    """The last will: the broker publishes it (retained) when the agent vanishes."""
    return (
        Heartbeat(store=store, state="offline", connected=False)
        .model_dump_json(by_alias=True, exclude_none=True)
        .encode()
    )


_FIRST_BATCH = 200
_IDLE_TICK_SECONDS = 5.0


@dataclasses.dataclass(slots=True)
class _Flight:
    seqs: set[int]
    sent_at: float
    task: asyncio.Task[None] | None = None


class Uplink:
    """One agent's MQTT side. `run(stop)` returns after `stop` is set."""

    def __init__(
        self,
        config: AgentConfig,
        outbox: Outbox,
        status: StatusSource,
        transport: Transport | None = None,
        downlink: Downlink | None = None,
    ) -> None:
        self.config = config
        self.downlink = downlink
        """Orders from central, when `[agent.downlink]` is enabled: same connection, same
        persistent session, QoS 1."""
        self._transport = transport
        """The broker from the config unless given (tests give a broker in memory)."""
        self.outbox = outbox
        self.status = status
        broker = config.broker
        self.prefix = broker.topic_prefix.rstrip("/")
        self.client_id = broker.client_id or f"tillbridge-agent-{config.store}"
        self.connected = asyncio.Event()
        self.wake = asyncio.Event()
        self.batches_sent = 0
        self.records_sent = 0
        self.resent = 0
        self.last_ack_at: datetime | None = None
        # Batches are compressed beside the loop (zlib lets go of the GIL while it works),
        # always on the same one thread: memory freed by one batch serves the next, where a
        # pool of threads would each keep their own (the agent's RSS during a drain).
        self._encoder: ThreadPoolExecutor | None = None
        self.last_error: str | None = None
        """The last connection error, cleared once connected (status shows now, not then)."""
        self.last_error_at: datetime | None = None
        self._probed = False
        self._hint: str | None = None
        self._client: Connection | None = None
        self._flights: dict[str, _Flight] = {}
        self._bytes_per_record: float | None = None

    # -- connection -----------------------------------------------------------------------

    def _options(self) -> ClientOptions:
        """Read at every connect: TLS files replaced on disk count from the next one."""
        return options_for(
            self.config.broker,
            self.client_id,
            will=Will(
                topic(self.prefix, self.config.store, "status"),
                offline_status(self.config.store),
            ),
            max_inflight=self.config.uplink.window * 2 + 10,
            timeout=30.0,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, send and receive until `stop` is set; reconnect whenever the link drops."""
        settings = self.config.uplink
        try:
            await keep_connected(
                self._transport or MqttTransport(self._options),
                stop,
                backoff=Backoff(settings.reconnect_min_seconds, settings.reconnect_max_seconds),
                on_connect=self._on_connect,
                session=functools.partial(self._session, stop=stop),
                on_lost=self._on_lost,
                on_closed=self._on_closed,
            )
        finally:
            if self._encoder is not None:
                self._encoder.shutdown(wait=False)
                self._encoder = None
        log.info("Uplink stopped.", extra={"batches": self.batches_sent})

    async def _on_lost(self, exc: MessagingError, wait: float) -> None:
        error = str(exc)
        hint = await self._scheme_hint()
        self.last_error = f"{hint} ({error})" if hint else error
        self.last_error_at = datetime.now(UTC)
        log.warning(
            "Broker unreachable; records stay in the outbox.",
            extra={
                "error": error,
                "broker": self.config.broker.url,
                "retry_in_seconds": round(wait, 2),
                **({"fix": hint} if hint else {}),
            },
        )

    async def _on_closed(self) -> None:
        self._client = None
        self.connected.clear()
        await self._drop_flights()

    async def _scheme_hint(self) -> str | None:
        """Once per run of failures: does the broker's port speak the other scheme?"""
        if self._probed:
            return self._hint
        self._probed = True
        broker = self.config.broker
        self._hint = await scheme_mismatch(broker.host, broker.port, tls=broker.tls)
        return self._hint

    async def _on_connect(self, client: Connection) -> None:
        self._client = client
        store = self.config.store
        await client.subscribe(topic(self.prefix, store, "ack"), qos=1)
        await client.subscribe(topic(self.prefix, store, "command"), qos=1)
        if self.downlink is not None:
            await client.subscribe(topic(self.prefix, store, "down"), qos=1)
        # Whatever was in flight on the last connection may be lost: send it again.
        requeued = await self.outbox.requeue()
        self.last_error = self.last_error_at = None
        self._probed, self._hint = False, None
        self.connected.set()
        log.info(
            "Connected to the broker.",
            extra={
                "client_id": self.client_id,
                "broker": self.config.broker.host,
                "requeued": requeued,
            },
        )
        await self.publish_status()

    async def _session(self, client: Connection, *, stop: asyncio.Event) -> None:
        tasks = {
            asyncio.create_task(self._read(client), name="uplink-read"),
            asyncio.create_task(self._send(client), name="uplink-send"),
            asyncio.create_task(stop.wait(), name="uplink-stop"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(MessagingError, TimeoutError):
            # A clean goodbye: say so rather than leave it to the last will.
            await client.publish(
                topic(self.prefix, self.config.store, "status"),
                offline_status(self.config.store),
                qos=1,
                retain=True,
                timeout=2,
            )

    async def _drop_flights(self) -> None:
        flights, self._flights = self._flights, {}
        for flight in flights.values():
            if flight.task is not None:
                flight.task.cancel()
        if flights:
            with contextlib.suppress(Exception):
                await self.outbox.requeue([s for f in flights.values() for s in f.seqs])

    # -- sending --------------------------------------------------------------------------

    def notify(self) -> None:
        """New records are in the outbox: send them now rather than at the next tick."""
        self.wake.set()

    async def _send(self, client: Connection) -> None:
        settings = self.config.uplink
        while True:
            self._expire()
            while len(self._flights) < settings.window:
                rows = await self.outbox.claim_pending(self._batch_size())
                if not rows:
                    break
                for part in await self._split(rows):
                    self._launch(client, part)
            self.wake.clear()
            # New records, acks and requests wake this at once; otherwise it looks again
            # often enough to re-send an unacknowledged batch on time, and no more.
            tick = min(_IDLE_TICK_SECONDS, settings.ack_timeout_seconds / 4)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), tick)

    def _batch_size(self) -> int:
        """Records per batch: as many as fit the byte limit by the compression seen so far,
        so batches are filled once rather than encoded and halved."""
        settings = self.config.uplink
        if self._bytes_per_record is None:
            # A first, small batch tells how well records compress.
            return min(settings.batch_max_records, _FIRST_BATCH)
        fits = int(0.9 * settings.batch_max_bytes / self._bytes_per_record)
        return max(1, min(settings.batch_max_records, fits))

    async def _split(self, rows: list[OutRow]) -> list[tuple[list[OutRow], bytes, str]]:
        """Batches no larger than the byte limit, halving where the compressed size is over."""
        batch_id = self._batch_id()
        encode = functools.partial(
            encode_records,
            [r.wire for r in rows],
            store=self.config.store,
            agent_id=self.config.agent_id,
            agent_version=__version__,
            batch_id=batch_id,
            sent_at=datetime.now(UTC),
            level=self.config.uplink.compression_level,
        )
        if self._encoder is None:
            self._encoder = ThreadPoolExecutor(1, thread_name_prefix="uplink-encode")
        payload = await asyncio.get_running_loop().run_in_executor(self._encoder, encode)
        per_record = len(payload) / len(rows)
        seen = self._bytes_per_record
        self._bytes_per_record = per_record if seen is None else 0.8 * seen + 0.2 * per_record
        if len(payload) <= self.config.uplink.batch_max_bytes:
            return [(rows, payload, batch_id)]
        if len(rows) == 1:
            log.error(
                "One record is larger than the batch size limit; sending it alone.",
                extra={"seq": rows[0].seq, "bytes": len(payload)},
            )
            return [(rows, payload, batch_id)]
        half = len(rows) // 2
        return await self._split(rows[:half]) + await self._split(rows[half:])

    def _launch(self, client: Connection, part: tuple[list[OutRow], bytes, str]) -> None:
        rows, payload, batch_id = part
        flight = _Flight(seqs={r.seq for r in rows}, sent_at=time.monotonic())
        self._flights[batch_id] = flight
        # The publish holds the compressed batch only, never the rows it was made of.
        again = sum(1 for r in rows if r.attempts > 1)
        flight.task = asyncio.create_task(
            self._publish(client, payload, batch_id, len(rows), again, rows[0].seq)
        )

    async def _publish(
        self,
        client: Connection,
        payload: bytes,
        batch_id: str,
        records: int,
        again: int,
        first_seq: int,
    ) -> None:
        # No message expiry: a record waits at the broker for as long as it takes.
        await client.publish(
            topic(self.prefix, self.config.store, "records"), payload, qos=1, timeout=60
        )
        self.batches_sent += 1
        self.records_sent += records
        self.resent += again
        log.debug(
            "Batch published.",
            extra={
                "batch_id": batch_id,
                "records": records,
                "first_seq": first_seq,
                "bytes": len(payload),
            },
        )

    def _expire(self) -> None:
        """Batches central did not acknowledge in time go back to pending, to be sent again."""
        limit = self.config.uplink.ack_timeout_seconds
        now = time.monotonic()
        for batch_id, flight in list(self._flights.items()):
            if flight.task is not None and flight.task.done() and not flight.task.cancelled():
                error = flight.task.exception()
                if error is not None:
                    raise error  # the connection failed under the publish: reconnect
            if now - flight.sent_at >= limit:
                del self._flights[batch_id]
                log.warning(
                    "Batch not acknowledged in time; sending it again.",
                    extra={"batch_id": batch_id, "records": len(flight.seqs)},
                )
                task = asyncio.create_task(self.outbox.requeue(flight.seqs))
                task.add_done_callback(lambda _t: self.wake.set())

    # -- receiving ------------------------------------------------------------------------

    async def _read(self, client: Connection) -> None:
        store = self.config.store
        ack_topic = topic(self.prefix, store, "ack")
        command_topic = topic(self.prefix, store, "command")
        down_topic = topic(self.prefix, store, "down")
        async for message in client.messages():
            if message.topic == ack_topic:
                await self.handle_ack(message.payload)
            elif message.topic == command_topic:
                await self.handle_command(message.payload)
            elif message.topic == down_topic and self.downlink is not None:
                await self.handle_down(client, message.payload)

    async def handle_down(self, client: Connection, payload: bytes) -> None:
        """Commit a downlink batch, then (only then) answer central on `downack`."""
        assert self.downlink is not None
        answer = await self.downlink.handle(payload)
        if answer is None:
            return
        await client.publish(
            topic(self.prefix, self.config.store, "downack"),
            encode_down(answer),
            qos=1,
            timeout=30,
        )

    async def handle_ack(self, payload: bytes) -> None:
        try:
            ack = Ack.model_validate_json(payload)
        except ValidationError:
            log.warning("Ack refused: not a valid ack.")
            return
        if ack.store != self.config.store:
            log.warning("Ack refused: it names another store.", extra={"ack_store": ack.store})
            return
        if not ack.batch_id.startswith(f"{self.outbox.epoch}-"):
            # A batch of an earlier outbox (rebuilt since): its seqs name other records
            # now. The broker's persistent session delivers such acks after a restart;
            # settling by them would let go of records central never had.
            log.info(
                "Ack of an earlier outbox's batch ignored.",
                extra={"batch_id": ack.batch_id, "seqs": len(ack.settled())},
            )
            return
        settled = ack.settled()
        rejected = {r.seq: r.reason for r in ack.rejected}
        with bind(batch_id=ack.batch_id):
            await self.outbox.acknowledge(settled, rejected)
            for item in ack.rejected:
                log.warning(
                    "Central kept a record aside in its exception queue.",
                    extra={"seq": item.seq, "key": item.key, "reason": item.reason},
                )
        self.last_ack_at = datetime.now(UTC)
        # Usually the ack settles the batch it names, whole; look further only for the rest.
        left = settled
        own = self._flights.get(ack.batch_id)
        if own is not None:
            left = settled - own.seqs
            own.seqs -= settled
            if not own.seqs:
                del self._flights[ack.batch_id]
        if left:
            for batch_id, flight in list(self._flights.items()):
                flight.seqs -= left
                if not flight.seqs:
                    del self._flights[batch_id]
        self.wake.set()

    async def handle_command(self, payload: bytes) -> None:
        try:
            command = Command.model_validate_json(payload)
        except ValidationError:
            log.warning("Command refused: not a valid command.")
            return
        if command.command == "resend" and command.from_seq is not None:
            queued, purged = await self.outbox.resend(command.from_seq, command.to_seq)
            level = logging.WARNING if purged else logging.INFO
            log.log(
                level,
                "Central asked for records again; queued.",
                extra={
                    "from_seq": command.from_seq,
                    "to_seq": command.to_seq,
                    "queued": queued,
                    "no_longer_held": purged,
                },
            )
            if purged:
                upper = command.to_seq if command.to_seq is not None else self.outbox.last_seq
                await self._release(command.from_seq, upper)
            self.wake.set()
        elif command.command == "floor":
            if await self.outbox.set_floor(command.to_seq or 0):
                log.warning(
                    "Numbering records on from central's highest seq.",
                    extra={"highest": command.to_seq or 0, "next_seq": self.outbox.last_seq + 1},
                )
        elif command.command == "heartbeat":
            await self.publish_status()
        else:
            log.info("Command not handled by this agent.", extra={"command": command.command})

    def _batch_id(self) -> str:
        """Unique, and prefixed by the outbox's epoch: an ack names the outbox it is for."""
        return f"{self.outbox.epoch}-{uuid.uuid4().hex}"

    async def _release(self, from_seq: int, to_seq: int) -> None:
        """Tell central which of the seqs it asked for this store will never send, and why,
        so it closes those gaps instead of asking forever (an empty batch that carries
        `released`). Sent again whenever central asks again."""
        client = self._client
        ranges = await self.outbox.not_held(from_seq, to_seq)
        if client is None or not ranges:
            return
        first = self.outbox.first_seq
        released: list[Release] = []
        for lo, hi in ranges[:100]:
            if lo < first:  # seqs of an outbox moved aside: re-read under new seqs
                released.append(
                    Release(
                        from_seq=lo,
                        to_seq=min(hi, first - 1),
                        cause="rebuilt",
                        reason=f"outbox created again at {self.outbox.created_at or 'start'}"
                        f" after the earlier one was moved aside; its records were re-read "
                        f"from the archive as seq {first} onwards",
                    )
                )
            if hi >= first:
                released.append(
                    Release(
                        from_seq=max(lo, first),
                        to_seq=hi,
                        cause="purged",
                        reason="acknowledged by central and purged from the store's outbox",
                    )
                )
        batch = Batch(
            store=self.config.store,
            agent=AgentInfo(id=self.config.agent_id, version=__version__),
            batch_id=self._batch_id(),
            sent_at=datetime.now(UTC),
            records=[],
            released=released[:100],
        )
        payload = encode_batch(batch)
        await client.publish(
            topic(self.prefix, self.config.store, "records"), payload, qos=1, timeout=10
        )
        log.warning(
            "Told central which seqs this store no longer holds.",
            extra={"ranges": [(r.from_seq, r.to_seq, r.cause) for r in released]},
        )

    # -- status ---------------------------------------------------------------------------

    async def publish_status(self) -> bool:
        """The retained heartbeat; False when there is no connection to carry it."""
        client = self._client
        if client is None:
            return False
        heartbeat = await self.status(True)
        await client.publish(
            topic(self.prefix, self.config.store, "status"),
            heartbeat.model_dump_json(by_alias=True, exclude_none=True),
            qos=1,
            retain=True,
            timeout=10,
        )
        return True

    @property
    def in_flight(self) -> int:
        return sum(len(f.seqs) for f in self._flights.values())
