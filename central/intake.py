"""Intake: the relay's MQTT side. Takes every store's batches, checks each batch's store
against its topic, commits the records to the inbox and only then acknowledges them;
feeds the fleet registry from heartbeats and asks stores to resend the seqs it misses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from pydantic import ValidationError

from central.config import CentralConfig
from central.inbox import IncomingRecord, InvalidRecord, Records, link_key
from central.inbox._model import utcnow
from central.inbox._sql import runs
from central.validated import Validated
from common.logs import bind, new_correlation_id
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
from common.redact import mask_pans_json
from contract import (
    SCHEMA_VERSION,
    Ack,
    Batch,
    Command,
    EnvelopeError,
    Heartbeat,
    Limits,
    Rejection,
    WireRecord,
    check_value,
    decode_batch_lenient,
    parse_topic,
    record_adapter,
    screen,
    topic,
)

__all__ = [
    "Intake",
    "examine",
    "gather_refusals",
    "inline",
    "records_filter",
    "small",
    "split_batch",
]

log = logging.getLogger("tillbridge.central.intake")

Resync = Callable[[str, Sequence[str], datetime], Awaitable[int]]
"""(store, scopes, requested_at) → messages queued: a store wants its reference data whole."""

validate_record = record_adapter.validate_python

DRAIN_SECONDS = 5
"""On stop, how long batches already taken from the broker may take to be acknowledged:
the relay is gone within ten seconds of SIGTERM whatever is queued (unacknowledged
batches are sent again by their agents)."""
ACK_REJECTIONS = 1000
"""Most rejections in one ack: about 400 KB at the longest reasons, under the 1 MB
message size limit of the shipped broker configuration."""
STATUS_BYTES = 64 * 1024
"""Largest heartbeat taken; a real one is a few hundred bytes."""
_STORE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def records_filter(prefix: str, shared_group: str | None) -> str:
    """The records subscription, shared between relays when a group is set."""
    base = f"{prefix.rstrip('/')}/+/records"
    return f"$share/{shared_group}/{base}" if shared_group else base


_REASON_CHARS = 300
"""Longest reason kept or sent: a path inside a hostile record can be long."""


def _short(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _reason(exc: ValidationError) -> str:
    """Where and what, never the offending value: it may be customer contact."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return _short("; ".join(parts))


def _summary(wire: WireRecord) -> dict[str, object]:
    """What the exception queue keeps of a record over a limit: never its body."""
    return {
        "seq": wire.seq,
        "key": wire.key,
        "kind": _short(wire.kind),
        "correlation_id": wire.correlation_id,
        "source": wire.source.model_dump(mode="json"),
        "body": None,
    }


def split_batch(
    batch: Batch, limits: Limits | None = None
) -> tuple[list[IncomingRecord], list[InvalidRecord]]:
    """Validate each record's body: records to insert, and records for the exception queue.
    A batch over the record count, and a record over a limit, are refused without their
    bodies being validated or kept."""
    limits = limits or Limits()
    good: list[IncomingRecord] = []
    bad: list[InvalidRecord] = []
    if len(batch.records) > limits.records_per_batch:
        reason = f"batch holds {len(batch.records)} records (limit {limits.records_per_batch})"
        return [], [InvalidRecord(w.seq, w.key, reason, _summary(w)) for w in batch.records]
    for wire in batch.records:
        # One walk finds an excess and masks card numbers; the reason is worded only for
        # a record refused.
        over_limit, body = screen(wire.body, limits)
        over = check_value(wire.body, limits, "body") if over_limit else None
        over = over or check_value(wire.kind, limits, "kind")
        if over is not None:
            bad.append(
                InvalidRecord(wire.seq, wire.key, _short(f"over a limit: {over}"), _summary(wire))
            )
            continue
        try:
            record = validate_record(wire.body)  # `wire.record()`, without its lazy import
        except ValidationError as exc:
            reason = f"invalid record: {_reason(exc)}"
        else:
            if record.key != wire.key:
                reason = "the body's key differs from the record's key"
            elif record.store != batch.store:
                reason = "the body's store differs from the batch's store"
            elif record.kind != wire.kind:
                reason = "the body's kind differs from the record's kind"
            else:
                if over_limit:
                    body = mask_pans_json(wire.body)  # the walk stopped early: mask it all
                # A card number never rests in the inbox, whatever the agent sent.
                good.append(
                    IncomingRecord(
                        seq=wire.seq,
                        key=wire.key,
                        kind=wire.kind,
                        correlation_id=wire.correlation_id,
                        occurred_at=wire.occurred_at,
                        body=body,
                        link_key=link_key(record),
                        # The validation holds for the stored body only if masking left
                        # it as it was (the usual case); otherwise routing validates
                        # the masked body.
                        record=record if body is wire.body else None,
                    )
                )
                continue
        bad.append(
            InvalidRecord(
                seq=wire.seq,
                key=wire.key,
                reason=reason,
                payload=mask_pans_json(wire.model_dump(mode="json")),
            )
        )
    return good, bad


INLINE_BYTES = 64 * 1024
"""Largest batch, inflated, that the intake reads on its event loop (about a millisecond
of work) rather than in a thread."""


def small(payload: bytes) -> bool:
    """True for a batch of at most INLINE_BYTES once inflated, found without inflating
    more than that: a compressed bomb is never read on the event loop."""
    return inline(payload, None) is not None


def inline(payload: bytes, limits: Limits | None) -> bytes | None:
    """A small batch's bytes to read on the event loop, or None for a large one (see
    `small`). A gzip batch comes back inflated when its size is within the `limits`, so
    that it is not inflated a second time; otherwise as it came, to be read as usual."""
    if len(payload) > INLINE_BYTES:
        return None
    if payload[:2] != b"\x1f\x8b":
        return payload  # plain JSON: its size is its length
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(payload, INLINE_BYTES + 1)
    except zlib.error:
        return payload  # not gzip after all: refused at once, whatever its size
    # A second gzip member after the first could be of any size.
    if not inflater.eof or len(data) > INLINE_BYTES or inflater.unused_data:
        return None
    if limits is None or len(data) > min(limits.message_bytes, limits.inflated_bytes):
        return payload  # the limits word the refusal, from the message as sent
    if data[:2] == b"\x1f\x8b":
        return payload  # gzip inside gzip is refused, never inflated twice
    return data


def examine(
    payload: bytes, limits: Limits
) -> tuple[Batch, list[IncomingRecord], list[InvalidRecord]]:
    """Decode a batch and sort its records (CPU work: the intake runs it off the event
    loop). EnvelopeError when the message cannot be read as a batch at all."""
    batch, broken = decode_batch_lenient(payload, limits)
    good, bad = split_batch(batch, limits)
    for seq, key, problem in broken:
        # Not even a record's shape: answered as rejected, so the agent stops sending it.
        payload_kept = {"seq": seq, "key": key, "body": None}
        bad.append(InvalidRecord(seq, key, f"invalid record: {problem}", payload_kept))
    return batch, good, bad


def gather_refusals(
    batch_id: str, bad: list[InvalidRecord], keep: int
) -> tuple[list[InvalidRecord], Counter[str]]:
    """The exception rows for a batch's refused records: the first `keep` one by one, the
    rest as one row naming their count, reasons and seq ranges; and the count per reason.
    A batch of a million invalid records is a hundred and one rows, not a million."""
    reasons: Counter[str] = Counter(b.reason for b in bad)
    if len(bad) <= keep:
        return list(bad), reasons
    rest = bad[keep:]
    rest_reasons = Counter(b.reason for b in rest)
    said = "; ".join(f"{n}× {r}" for r, n in rest_reasons.most_common(3))
    ranges = runs(b.seq for b in rest)
    aggregate = InvalidRecord(
        seq=rest[0].seq,
        key=f"{batch_id}:{len(rest)}-more",
        reason=_short(f"{len(rest)} more records of batch {batch_id} refused: {said}"),
        payload={
            "batch_id": batch_id,
            "refused": len(rest),
            "reasons": dict(rest_reasons.most_common(20)),
            "seq_ranges": ranges[:1000],
        },
    )
    return [*bad[:keep], aggregate], reasons


RECEIPT_IDS = 20
"""At most this many record correlation ids on a receipt line."""


def _few(ids: set[str]) -> list[str]:
    """The first `RECEIPT_IDS` ids, sorted, and how many more there were."""
    shown = sorted(ids)
    if len(shown) <= RECEIPT_IDS:
        return shown
    return [*shown[:RECEIPT_IDS], f"… {len(shown) - RECEIPT_IDS} more"]


class Intake:
    """One relay's subscriber. `run(stop)` returns after `stop` is set and work in hand is done."""

    def __init__(
        self,
        config: CentralConfig,
        inbox: Records,
        transport: Transport | None = None,
        validated: Validated | None = None,
        resync: Resync | None = None,
    ) -> None:
        self.config = config
        self.resync = resync
        self._resyncs: set[asyncio.Task[None]] = set()
        """Answers a heartbeat's `resync` (the feeds' fan-out); None: no reference data."""
        self.validated = validated
        """Where the records this intake committed are kept validated, for routing."""
        self._transport = transport
        """The broker from the config unless given (tests give a broker in memory)."""
        self.inbox = inbox
        self.prefix = config.broker.topic_prefix.rstrip("/")
        self.client_id = config.broker.client_id or f"tillbridge-central-{config.relay_id}"
        self.counters: Counter[str] = Counter()
        self.connected = asyncio.Event()
        self._client: Connection | None = None
        self._queues: list[asyncio.Queue[tuple[str, str, bytes]]] = [
            asyncio.Queue() for _ in range(config.intake.workers)
        ]

    # -- connection -----------------------------------------------------------------------

    def _options(self) -> ClientOptions:
        """Read at every connect: TLS files replaced on disk count from the next one."""
        return options_for(self.config.broker, self.client_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Subscribe and work until `stop` is set; reconnect with backoff when the broker goes."""
        settings = self.config.intake
        workers = [asyncio.create_task(self._worker(q)) for q in self._queues]
        upkeep = asyncio.create_task(self._upkeep(stop))
        try:
            await keep_connected(
                self._transport or MqttTransport(self._options),
                stop,
                backoff=Backoff(settings.reconnect_min_seconds, settings.reconnect_max_seconds),
                on_connect=self._on_connect,
                session=functools.partial(self._read, stop=stop),
                on_lost=self._on_lost,
                on_closed=self._on_closed,
            )
        finally:
            upkeep.cancel()
            for task in [*workers, *self._resyncs]:
                # A resync cut short is finished when the store asks again (its keys).
                task.cancel()
            await asyncio.gather(upkeep, *workers, *self._resyncs, return_exceptions=True)
            log.info("Intake stopped.", extra=dict(self.counters))

    async def _on_connect(self, client: Connection) -> None:
        await client.subscribe(records_filter(self.prefix, self.config.broker.shared_group), qos=1)
        await client.subscribe(f"{self.prefix}/+/status", qos=1)
        self._client = client
        self.connected.set()
        log.info(
            "Connected to the broker.",
            extra={"client_id": self.client_id, "broker": self.config.broker.host},
        )

    async def _on_lost(self, exc: MessagingError, wait: float) -> None:
        log.warning(
            "Broker connection lost; reconnecting.",
            extra={"error": str(exc), "retry_in_seconds": round(wait, 2)},
        )

    async def _on_closed(self) -> None:
        self._client = None
        self.connected.clear()

    async def _read(self, client: Connection, *, stop: asyncio.Event) -> None:
        if not await until_stopped(self._pump(client), stop):
            return
        # Finish what was taken from the broker while the connection can still carry acks.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues)), DRAIN_SECONDS)

    async def _pump(self, client: Connection) -> None:
        async for message in client.messages():
            try:
                store, channel = parse_topic(self.prefix, message.topic)
            except EnvelopeError:
                continue
            if not _STORE.fullmatch(store):
                # No store of ours has such a name, and the broker's ACL gives none such a
                # topic: counted and dropped, never written anywhere at its length.
                self.counters["bad_topic"] += 1
                log.warning(
                    "Security event: message on a topic that names no valid store.",
                    extra={"event": "security", "topic_store": store[:64]},
                )
                continue
            payload = message.payload
            # Batches of one store always go to the same worker, so they are handled in order.
            index = zlib.crc32(store.encode()) % len(self._queues)
            self._queues[index].put_nowait((store, channel, payload))

    async def _worker(self, queue: asyncio.Queue[tuple[str, str, bytes]]) -> None:
        while True:
            store, channel, payload = await queue.get()
            try:
                if channel == "records":
                    await self.handle_batch(store, payload)
                elif channel == "status":
                    await self.handle_status(store, payload)
            except Exception:
                self.counters["errors"] += 1
                log.exception("Message could not be handled.", extra={"store": store})
            finally:
                queue.task_done()

    async def _publish(self, name: str, payload: str) -> None:
        client = self._client
        if client is None:
            raise MessagingError("not connected")
        await client.publish(name, payload, qos=1)

    # -- batches --------------------------------------------------------------------------

    async def handle_batch(self, store: str, payload: bytes) -> None:
        """Validate, refuse or commit one batch; acknowledge what was committed."""
        with bind(correlation_id=new_correlation_id(), store=store):
            try:
                # Inflating, JSON and validation are CPU work: a large batch is read in a
                # thread, so that the loop keeps answering /healthz, other stores and
                # signals meanwhile; a small one (the usual) costs less than the hand-off.
                limits = self.config.intake.limits
                data = inline(payload, limits)
                if data is not None:
                    batch, good, bad = examine(data, limits)
                else:
                    batch, good, bad = await asyncio.to_thread(examine, payload, limits)
            except EnvelopeError as exc:
                await self._refuse("invalid", store, None, None, str(exc))
                return
            if batch.store != store:
                log.warning(
                    "Security event: batch refused, its envelope names another store.",
                    extra={
                        "event": "security",
                        "topic_store": store,
                        "envelope_store": batch.store,
                        "batch_id": batch.batch_id,
                        "agent_id": batch.agent.id,
                    },
                )
                await self._refuse(
                    "spoofed", store, batch.store, batch.batch_id, "envelope store differs"
                )
                return
            if batch.schema_version != SCHEMA_VERSION:
                reason = f"unsupported schema {batch.schema_version}"
                await self._refuse("invalid", store, batch.store, batch.batch_id, reason)
                return
            with bind(batch_id=batch.batch_id):
                await self._commit_and_ack(batch, good, bad)

    async def _commit_and_ack(
        self, batch: Batch, good: list[IncomingRecord], bad: list[InvalidRecord]
    ) -> None:
        kept, reasons = gather_refusals(
            batch.batch_id, bad, self.config.intake.exceptions_per_batch
        )
        if bad:
            # One line per batch, however many of its records were refused.
            log.warning(
                "Records rejected; kept in the exception queue.",
                extra={
                    "rejected": len(bad),
                    "first_seq": bad[0].seq,
                    "first_key": bad[0].key,
                    "reasons": dict(reasons.most_common(5)),
                },
            )
        result = await self.inbox.insert_batch(
            batch.store,
            good,
            rejected=kept,
            refused_seqs=[b.seq for b in bad],
            released=batch.released,
            batch_id=batch.batch_id,
            agent=(batch.agent.id, batch.agent.version),
        )
        if self.validated is not None and result.committed:
            # Only records this batch inserted: a duplicate's stored body may differ.
            fresh = set(result.committed)
            for record in good:
                if record.record is not None and record.seq in fresh:
                    self.validated.keep(record.key, record.record)
        self.counters["batches"] += 1
        self.counters["committed"] += len(result.committed)
        self.counters["duplicates"] += len(result.duplicates)
        self.counters["rejected"] += len(bad)
        if self.config.intake.ack_delay_seconds:
            await asyncio.sleep(self.config.intake.ack_delay_seconds)
        rejections = [Rejection(seq=b.seq, key=b.key, reason=b.reason) for b in bad]
        # Many rejections go in several acks of the same batch (the agent settles the seqs
        # each names), so that no ack outgrows the broker's message size limit.
        for start in range(0, max(len(rejections), 1), ACK_REJECTIONS):
            ack = Ack(
                store=batch.store,
                batch_id=batch.batch_id,
                committed=result.committed if start == 0 else [],
                duplicates=result.duplicates if start == 0 else [],
                rejected=rejections[start : start + ACK_REJECTIONS],
            )
            await self._publish(
                topic(self.prefix, batch.store, "ack"), ack.model_dump_json(by_alias=True)
            )
            self.counters["acks"] += 1
        if not log.isEnabledFor(logging.INFO):
            return  # the receipt below reads every record: not made when not written
        log.info(
            "Batch acknowledged.",
            extra={
                "records": len(batch.records),
                "committed": len(result.committed),
                "duplicates": len(result.duplicates),
                "rejected": len(bad),
                # The ids the records carry from the agent (one per source file), as the
                # dashboard shows them: the receipt is part of each record's story. A few
                # at most: a batch of thousands of ids would stall the loop in redaction.
                "record_correlation_ids": _few({r.correlation_id for r in batch.records}),
            },
        )

    async def _refuse(
        self,
        kind: str,
        store: str,
        envelope_store: str | None,
        batch_id: str | None,
        reason: str,
    ) -> None:
        self.counters["refused"] += 1
        self.counters[kind] += 1
        if kind != "spoofed":
            log.warning("Batch refused.", extra={"reason": reason, "batch_id": batch_id})
        await self.inbox.record_refusal(kind, store, envelope_store, batch_id, reason)

    # -- fleet ----------------------------------------------------------------------------

    async def handle_status(self, store: str, payload: bytes) -> None:
        """A heartbeat or last will: update the store's entry in the fleet registry."""
        if not payload:
            return
        if len(payload) > STATUS_BYTES:
            self.counters["status_refused"] += 1
            log.warning(
                "Status refused.",
                extra={"store": store, "reason": f"{len(payload)} bytes (limit {STATUS_BYTES})"},
            )
            return
        try:
            heartbeat = Heartbeat.model_validate_json(payload)
        except ValidationError as exc:
            self.counters["status_refused"] += 1
            log.warning("Status refused.", extra={"store": store, "reason": _reason(exc)})
            return
        if heartbeat.store != store:
            log.warning(
                "Security event: status refused, it names another store.",
                extra={
                    "event": "security",
                    "topic_store": store,
                    "envelope_store": heartbeat.store,
                },
            )
            await self._refuse("spoofed", store, heartbeat.store, None, "status store differs")
            return
        await self.inbox.record_heartbeat(heartbeat)
        self.counters["heartbeats"] += 1
        if heartbeat.seq_floor_wanted and heartbeat.state == "online" and self._client:
            # A rebuilt outbox that lost its last seq numbers on from what central has, so
            # no seq of this store ever names two records.
            highest = next((s.max_seq for s in await self.inbox.stores() if s.store == store), 0)
            command = Command(command="floor", to_seq=highest or None, issued_at=utcnow())
            await self._publish(
                topic(self.prefix, store, "command"), command.model_dump_json(by_alias=True)
            )
            log.info("Highest seq sent to a rebuilt agent.", extra={"store": store, "seq": highest})
        if heartbeat.resync and heartbeat.resync_requested_at and self.resync is not None:
            # Answered once per request, however often the store repeats it, beside the
            # intake: a whole catalog must not hold up the store's batches.
            task = asyncio.create_task(
                self._answer_resync(store, heartbeat.resync, heartbeat.resync_requested_at)
            )
            self._resyncs.add(task)
            task.add_done_callback(self._resyncs.discard)

    async def _answer_resync(self, store: str, wanted: Sequence[str], at: datetime) -> None:
        assert self.resync is not None
        try:
            queued = await self.resync(store, wanted, at)
        except Exception:  # the next heartbeat asks again; what was queued stays once
            log.exception("Resync request could not be answered.", extra={"store": store})
            return
        self.counters["resync_queued"] += queued

    # -- completeness and parking ---------------------------------------------------------

    async def _upkeep(self, stop: asyncio.Event) -> None:
        settings = self.config.intake
        tick = min(max(settings.gap_grace_seconds / 4, 0.1), 10.0)
        while not stop.is_set():
            try:
                await self.request_missing()
                swept = await self.inbox.sweep_parked()
                if swept:
                    log.info(
                        "Parked records released: their original is posted.",
                        extra={"count": swept},
                    )
                expired = await self.inbox.expire_parked(timedelta(hours=settings.park_max_hours))
                if expired:
                    log.warning("Parked records became exceptions.", extra={"count": len(expired)})
            except Exception:
                log.exception("Upkeep failed; trying again.")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)

    async def request_missing(self) -> int:
        """Ask stores to resend the seq ranges missing for longer than the grace period."""
        if self._client is None:
            return 0
        grace = timedelta(seconds=self.config.intake.gap_grace_seconds)
        sent = 0
        gaps = await self.inbox.due_gaps(grace, max_requests=self.config.intake.gap_max_requests)
        for gap in gaps:
            if gap.requests >= self.config.intake.gap_max_requests:
                log.error(
                    "Seqs still missing after every request; handed to the exception queue.",
                    extra={
                        "store": gap.store,
                        "from_seq": gap.from_seq,
                        "to_seq": gap.to_seq,
                        "requests": gap.requests,
                    },
                )
            command = Command(
                command="resend", from_seq=gap.from_seq, to_seq=gap.to_seq, issued_at=utcnow()
            )
            await self._publish(
                topic(self.prefix, gap.store, "command"), command.model_dump_json(by_alias=True)
            )
            sent += 1
            self.counters["resends"] += 1
            log.info(
                "Resend requested.",
                extra={
                    "store": gap.store,
                    "from_seq": gap.from_seq,
                    "to_seq": gap.to_seq,
                    "requests": gap.requests,
                },
            )
        return sent
