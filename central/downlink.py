"""The relay's sender on the way down: publishes each store's queued messages as a
`DownBatch` on `{prefix}/{store}/down`, sends again what the store has not answered after
the resend interval (at once when the store's heartbeat turns online), and settles the
queue from the store's `DownAck` on `{prefix}/{store}/downack`.

The queue lives in the inbox (`Downlink` role); this module only moves it. A message is
let go only when its store answered for it, on that store's own topic: an answer whose
payload names another store is refused, counted, logged as a security event and kept
with the inbox's refusals (`stats`: spoofed).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol

from pydantic import ValidationError

from central.config import CentralConfig
from central.inbox import Downlink, DownRow, Refusals
from central.inbox._model import utcnow
from common.messaging import (
    Backoff,
    ClientOptions,
    Connection,
    MessagingError,
    MqttTransport,
    Transport,
    keep_connected,
    options_for,
    until_stopped,
)
from contract import (
    DownBatch,
    DownMessage,
    EnvelopeError,
    Heartbeat,
    decode_down_ack,
    encode_down,
    parse_topic,
    topic,
)

__all__ = ["BATCH_BYTES", "DownlinkInbox", "DownlinkSender", "answers_filter", "status_filter"]

log = logging.getLogger("tillbridge.central.downlink")

BATCH_BYTES = 512 * 1024
"""Largest batch as sent (compressed): half the shipped broker's message size limit."""
ANSWER_BYTES = 256 * 1024
"""Largest answer taken; one naming a thousand seqs is a few kilobytes."""
STATUS_BYTES = 64 * 1024
"""Largest heartbeat read (the intake's limit)."""
_STORE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class DownlinkInbox(Downlink, Refusals, Protocol):
    """What the sender uses of the inbox: the downlink, and the register of refused
    messages (a forged answer is kept there beside forged batches)."""


def _shared(prefix: str, channel: str, shared_group: str | None) -> str:
    base = f"{prefix.rstrip('/')}/+/{channel}"
    return f"$share/{shared_group}/{base}" if shared_group else base


def answers_filter(prefix: str, shared_group: str | None) -> str:
    """The stores' answers, shared between relays when a group is set (one relay settles
    each answer)."""
    return _shared(prefix, "downack", shared_group)


def status_filter(prefix: str, shared_group: str | None) -> str:
    """The stores' heartbeats as the sender hears them, to send at once to a store that
    comes online; shared like the answers, so one relay does it."""
    return _shared(prefix, "status", shared_group)


def _message(row: DownRow) -> DownMessage:
    return DownMessage(
        seq=row.seq,
        kind=row.kind,  # the inbox queues only DOWN_KINDS: the model checks it
        key=row.key,
        issued_at=row.queued_at,
        body=json.loads(row.body),
    )


def batches(store: str, rows: Sequence[DownRow], most: int) -> list[tuple[DownBatch, bytes]]:
    """The rows as batches of at most `most` messages and BATCH_BYTES, each with its bytes.
    A batch over the size is halved until it fits; a single message over it is sent alone
    (the broker refuses it and the store never answers it, so it stays visible as
    pending)."""
    out: list[tuple[DownBatch, bytes]] = []
    todo = [list(rows[i : i + most]) for i in range(0, len(rows), most)]
    while todo:
        part = todo.pop(0)
        batch = DownBatch(
            store=store,
            batch_id=uuid.uuid4().hex,
            sent_at=utcnow(),
            messages=[_message(r) for r in part],
        )
        payload = encode_down(batch)
        if len(payload) > BATCH_BYTES and len(part) > 1:
            half = len(part) // 2
            todo[:0] = [part[:half], part[half:]]
            continue
        out.append((batch, payload))
    return out


class DownlinkSender:
    """One relay's downlink. `run(stop)` returns after `stop` is set."""

    def __init__(
        self, config: CentralConfig, inbox: DownlinkInbox, transport: Transport | None = None
    ) -> None:
        self.config = config
        self.settings = config.downlink
        self.inbox = inbox
        self._transport = transport
        """The broker from the config unless given (tests give a broker in memory)."""
        self.prefix = config.broker.topic_prefix.rstrip("/")
        base = config.broker.client_id or f"tillbridge-central-{config.relay_id}"
        self.client_id = f"{base}-down"
        self.counters: Counter[str] = Counter()
        self.connected = asyncio.Event()
        self._client: Connection | None = None
        self._states: dict[str, str] = {}
        """Each store's state as this relay last heard it: an offline store is not sent
        to until it is back, and then at once."""
        self._back: set[str] = set()
        self._wake = asyncio.Event()

    def _options(self) -> ClientOptions:
        return options_for(self.config.broker, self.client_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Subscribe, send and settle until `stop` is set; reconnect with backoff."""
        intake = self.config.intake
        sender = asyncio.create_task(self._send_loop(stop), name="downlink-sender")
        try:
            await keep_connected(
                self._transport or MqttTransport(self._options),
                stop,
                backoff=Backoff(intake.reconnect_min_seconds, intake.reconnect_max_seconds),
                on_connect=self._on_connect,
                session=functools.partial(self._read, stop=stop),
                on_lost=self._on_lost,
                on_closed=self._on_closed,
            )
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            log.info("Downlink stopped.", extra=dict(self.counters))

    async def _on_connect(self, client: Connection) -> None:
        group = self.config.broker.shared_group
        await client.subscribe(answers_filter(self.prefix, group), qos=1)
        await client.subscribe(status_filter(self.prefix, group), qos=1)
        self._client = client
        self.connected.set()
        self._wake.set()
        log.info("Downlink connected to the broker.", extra={"client_id": self.client_id})

    async def _on_lost(self, exc: MessagingError, wait: float) -> None:
        log.warning(
            "Downlink lost the broker; reconnecting.",
            extra={"error": str(exc), "retry_in_seconds": round(wait, 2)},
        )

    async def _on_closed(self) -> None:
        self._client = None
        self.connected.clear()

    async def _read(self, client: Connection, *, stop: asyncio.Event) -> None:
        await until_stopped(self._pump(client), stop)

    async def _pump(self, client: Connection) -> None:
        async for message in client.messages():
            try:
                store, channel = parse_topic(self.prefix, message.topic)
            except EnvelopeError:
                continue
            if not _STORE.fullmatch(store):
                self.counters["bad_topic"] += 1
                continue
            try:
                if channel == "downack":
                    await self.handle_answer(store, message.payload)
                elif channel == "status":
                    self.handle_status(store, message.payload)
            except Exception:
                self.counters["errors"] += 1
                log.exception("Downlink message could not be handled.", extra={"store": store})

    # -- answers --------------------------------------------------------------------------

    async def handle_answer(self, store: str, payload: bytes) -> int:
        """Settle what a store's answer says it holds; returns how many messages settled."""
        if len(payload) > ANSWER_BYTES:
            self.counters["answers_refused"] += 1
            log.warning(
                "Downlink answer refused.",
                extra={"store": store, "reason": f"{len(payload)} bytes (limit {ANSWER_BYTES})"},
            )
            return 0
        try:
            answer = decode_down_ack(payload)
        except EnvelopeError as exc:
            self.counters["answers_refused"] += 1
            log.warning("Downlink answer refused.", extra={"store": store, "reason": str(exc)})
            return 0
        if answer.store != store:
            self.counters["answers_refused"] += 1
            self.counters["spoofed_answers"] += 1
            log.warning(
                "Security event: downlink answer refused, it names another store.",
                extra={
                    "event": "security",
                    "topic_store": store,
                    "envelope_store": answer.store,
                    "batch_id": answer.batch_id,
                },
            )
            await self.inbox.record_refusal(
                "spoofed", store, answer.store, answer.batch_id, "downlink answer store differs"
            )
            return 0
        settled = await self.inbox.settle_down(store, answer.committed, answer.through)
        self.counters["answers"] += 1
        self.counters["settled"] += settled
        log.info(
            "Downlink answer settled messages.",
            extra={
                "store": store,
                "batch_id": answer.batch_id,
                "committed": len(answer.committed),
                "through": answer.through,
                "settled": settled,
            },
        )
        return settled

    def handle_status(self, store: str, payload: bytes) -> None:
        """Note a store's state; one that turns online gets its pending messages at once.
        A heartbeat that cannot be read, or names another store, is left to the intake,
        which refuses and records it."""
        if not payload or len(payload) > STATUS_BYTES:
            return
        try:
            heartbeat = Heartbeat.model_validate_json(payload)
        except ValidationError:
            return
        if heartbeat.store != store:
            return
        before = self._states.get(store)
        self._states[store] = heartbeat.state
        if heartbeat.state == "online" and before != "online":
            self._back.add(store)
            self._wake.set()

    # -- sending --------------------------------------------------------------------------

    async def _send_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.send_to_returning()
                await self.send_due()
            except MessagingError as exc:
                log.warning("Downlink send interrupted.", extra={"error": str(exc)})
            except Exception:
                self.counters["errors"] += 1
                log.exception("Downlink send failed; trying again.")
            waking = asyncio.create_task(self._wake.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait(
                {waking, stopping},
                timeout=self.settings.poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waking.cancel()
            stopping.cancel()

    async def send_due(self) -> int:
        """Publish every store's messages that are due (never sent, or not answered within
        the resend interval), except to stores last heard offline; returns how many."""
        if self._client is None:
            return 0
        due = await self.inbox.due_down(
            resend_after=timedelta(seconds=self.settings.resend_seconds),
            # Ten batches a store per pass: a long queue drains without waiting a poll
            # between batches.
            limit=self.settings.batch_messages * 10,
        )
        sent = 0
        for store, rows in due.items():
            if self._states.get(store) == "offline":
                continue
            sent += await self._send(store, rows)
        return sent

    async def send_to_returning(self) -> int:
        """Publish every unanswered message of the stores that have just come online."""
        sent = 0
        while self._back and self._client is not None:
            store = self._back.pop()
            rows = await self.inbox.pending_down(store, limit=self.settings.batch_messages)
            if rows:
                sent += await self._send(store, rows)
                log.info(
                    "Pending messages sent to a store back online.",
                    extra={"store": store, "messages": len(rows)},
                )
        return sent

    async def _send(self, store: str, rows: Sequence[DownRow]) -> int:
        client = self._client
        if client is None:
            raise MessagingError("not connected")
        name = topic(self.prefix, store, "down")
        for batch, payload in batches(store, rows, self.settings.batch_messages):
            await client.publish(name, payload, qos=1)
            seqs = [m.seq for m in batch.messages]
            # Marked after the broker has it: a relay stopped in between sends it again,
            # which the store takes once (idempotent by seq).
            await self.inbox.mark_down_sent(store, seqs)
            these = set(seqs)
            again = sum(1 for r in rows if r.seq in these and r.sends)
            self.counters["batches"] += 1
            self.counters["messages"] += len(seqs)
            self.counters["resent"] += again
            log.info(
                "Downlink batch sent.",
                extra={
                    "store": store,
                    "batch_id": batch.batch_id,
                    "first_seq": seqs[0],
                    "last_seq": seqs[-1],
                    "messages": len(seqs),
                    "resent": again,
                },
            )
        return len(rows)
