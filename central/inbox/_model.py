"""What the inbox holds and hands out: record states, the rows going in and coming
out, and the `Inbox` protocol that the SQLite and PostgreSQL backends both implement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from contract import Heartbeat, Record, Release, Transaction, make_key

from ._reference import Reference

__all__ = [
    "CLAIMABLE",
    "AuditEntry",
    "ClaimedRecord",
    "Deliveries",
    "DeliveryItem",
    "DeliveryState",
    "DeliveryUpdate",
    "DownRow",
    "Downlink",
    "DownlinkSummary",
    "ExceptionItem",
    "ExceptionQueue",
    "Gap",
    "Inbox",
    "IncomingRecord",
    "InsertResult",
    "InvalidRecord",
    "RecordState",
    "Records",
    "Refusals",
    "Released",
    "RouteDecision",
    "StoreStatus",
    "Views",
    "link_key",
    "utcnow",
]


class RecordState(StrEnum):
    RECEIVED = "received"
    ROUTED = "routed"
    POSTED = "posted"
    PARKED = "parked"
    RETRYING = "retrying"
    EXCEPTION = "exception"
    RESOLVED = "resolved"


CLAIMABLE = (RecordState.RECEIVED, RecordState.ROUTED, RecordState.RETRYING)
"""States that delivery may claim."""

# Which states a record may come from to reach each state.
ALLOWED_FROM: dict[RecordState, tuple[RecordState, ...]] = {
    RecordState.RECEIVED: (RecordState.PARKED, RecordState.EXCEPTION, RecordState.RETRYING),
    RecordState.ROUTED: (RecordState.RECEIVED, RecordState.RETRYING, RecordState.EXCEPTION),
    RecordState.POSTED: (RecordState.RECEIVED, RecordState.ROUTED, RecordState.RETRYING),
    RecordState.PARKED: (RecordState.RECEIVED, RecordState.ROUTED),
    RecordState.RETRYING: (RecordState.RECEIVED, RecordState.ROUTED, RecordState.RETRYING),
    RecordState.EXCEPTION: (
        RecordState.RECEIVED,
        RecordState.ROUTED,
        RecordState.RETRYING,
        RecordState.PARKED,
    ),
    RecordState.RESOLVED: (RecordState.EXCEPTION,),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IncomingRecord:
    """A validated record from a batch, ready to insert."""

    seq: int
    key: str
    kind: str
    correlation_id: str
    occurred_at: datetime
    body: dict[str, Any]
    link_key: str | None = None
    record: Any = field(default=None, compare=False, repr=False)
    """The body validated (a `Record`), when the intake has it: routing and delivery
    reuse it instead of validating the stored body again."""


@dataclass(frozen=True)
class InvalidRecord:
    """A record whose body failed validation: kept in the exception queue with the reason."""

    seq: int
    key: str
    reason: str
    payload: dict[str, Any]


class InsertResult(NamedTuple):
    committed: list[int]
    duplicates: list[int]


@dataclass(frozen=True)
class ClaimedRecord:
    id: int
    key: str
    store: str
    seq: int
    kind: str
    state: RecordState
    attempts: int
    correlation_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Gap:
    """A range of a store's seqs that central has not received."""

    store: str
    from_seq: int
    to_seq: int
    first_seen: datetime
    last_requested: datetime | None = None
    requests: int = 0


@dataclass(frozen=True)
class StoreStatus:
    store: str
    state: str
    first_seen: datetime
    last_seen: datetime
    agent_id: str | None
    agent_version: str | None
    backlog_rows: int | None
    oldest_unacked_seconds: float | None
    contiguous_seq: int
    max_seq: int
    records: int
    duplicates: int
    gaps: list[Gap] = field(default_factory=list)
    last_release: Released | None = None
    orders_waiting: int | None = None
    """Downlink messages the store holds and has not yet written to the POS, as its last
    online heartbeat said (None until one said it)."""
    orders_alert: int | None = None
    """Of those, how many waited past the agent's alert time: the POS does not take them."""


@dataclass(frozen=True)
class Released:
    """Seqs a store said it will never send, and why (the store's audit of a closed gap)."""

    store: str
    from_seq: int
    to_seq: int
    cause: str
    reason: str
    received_at: datetime


@dataclass(frozen=True)
class ExceptionItem:
    id: int
    store: str
    seq: int | None
    key: str | None
    record_id: int | None
    reason: str
    payload: dict[str, Any] | None
    created_at: datetime
    target: str | None = None
    status: int | None = None
    response: Any = None
    attempts: int = 0
    resolved_at: datetime | None = None
    resolution: str | None = None
    resolved_by: str | None = None
    kind: str | None = None


class DeliveryState(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    POSTED = "posted"
    EXCEPTION = "exception"
    SUPERSEDED = "superseded"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class RouteDecision:
    """What routing decided for one record: a route per target, or why it cannot go."""

    record_id: int
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    snapshot: dict[str, Any] | None = None
    subject: str | None = None
    """Inventory: `store|location|sku`, so updates of one level are applied in order."""


@dataclass(frozen=True)
class DeliveryItem:
    """One record claimed for one target."""

    record_id: int
    target: str
    key: str
    store: str
    seq: int
    kind: str
    correlation_id: str
    body: dict[str, Any]
    attempts: int
    """Earlier attempts, including any a relay began and never recorded."""
    route: dict[str, Any]
    subject: str | None
    original_ref: str | None
    superseded: bool
    ref: str | None = None
    """What this target's connector noted on an earlier attempt (a retry's or a hold's
    ref), or None."""
    level_ref: str | None = None
    """A stock movement: the ref of this target's last posted update of the same subject
    (the latest posted, not the highest seq), or None when none was posted."""


@dataclass(frozen=True)
class DeliveryUpdate:
    """The verdict on one claimed delivery, as the delivery worker records it."""

    record_id: int
    verdict: str
    """posted | retry | exception | superseded | deferred"""
    reason: str = ""
    status: int | None = None
    ref: str | None = None
    retry_at: datetime | None = None
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    count_attempt: bool = True
    confirmed: str | None = None
    """For a posted sale: the total the target stated (a decimal string)."""


@dataclass(frozen=True)
class DayRecord:
    """A record of one store's business day, with the targets that confirmed it."""

    id: int
    kind: str
    state: str
    body: dict[str, Any]
    posted_to: list[str]
    confirmed: dict[str, str] = field(default_factory=dict)
    """Per target that stated one: the total it confirmed (a decimal string)."""


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    step: str
    target: str | None
    status: int | None
    detail: Any
    relay_id: str | None


def link_key(record: Record) -> str | None:
    """Key of the original transaction a return or void refers to, when it can be known.

    The link's own `key` wins; otherwise the key is rebuilt from the link's POS
    identifiers the way the agent builds a sale's key. A link without a business
    date cannot be matched and is not parked.
    """
    if not isinstance(record, Transaction) or record.kind not in ("return", "void"):
        return None
    for link in record.links:
        if link.key:
            return link.key
        if link.business_date is not None:
            return make_key(
                "sale",
                link.store or record.store,
                link.register,
                link.business_date,
                link.transaction_id,
            )
    for line in record.lines:
        ref = line.link
        if ref is None:
            continue
        if ref.key:
            return ref.key
        if ref.business_date is not None and ref.transaction_id:
            return make_key(
                "sale",
                ref.store or record.store,
                ref.register,
                ref.business_date,
                ref.transaction_id,
            )
    return None


class Refusals(Protocol):
    """The register of what the relay refused whole (a forged batch or answer, an order
    no store can take), counted in `stats`."""

    async def record_refusal(
        self,
        kind: str,
        topic_store: str,
        envelope_store: str | None,
        batch_id: str | None,
        reason: str,
        *,
        now: datetime | None = None,
    ) -> None: ...


class Records(Refusals, Protocol):
    """Records in and out of the inbox: each store's batches stored once, the gap-free
    stream per store (gaps, releases, heartbeats, refusals), and a record's state as it is
    claimed and moved on."""

    async def insert_batch(
        self,
        store: str,
        records: Sequence[IncomingRecord],
        *,
        rejected: Sequence[InvalidRecord] = (),
        refused_seqs: Sequence[int] = (),
        released: Sequence[Release] = (),
        batch_id: str = "",
        agent: tuple[str, str] | None = None,
        now: datetime | None = None,
    ) -> InsertResult:
        """Insert each record if its key is absent, in one transaction with the seq receipts.
        `rejected` go to the exception queue; they and `refused_seqs` (refused records
        summed up in one of `rejected`) count as received: they leave no gap. `released`
        ranges (seqs the store says it will never send) close their gaps and are kept as
        the store's audit; a `purged` one also becomes an exception for a person."""
        ...

    async def claim(
        self,
        n: int,
        relay_id: str,
        lease: timedelta,
        *,
        now: datetime | None = None,
        states: Sequence[RecordState] = CLAIMABLE,
    ) -> list[ClaimedRecord]:
        """Up to `n` records for delivery that no other relay holds a live lease on."""
        ...

    async def transition(
        self,
        ids: Sequence[int],
        state: RecordState,
        *,
        relay_id: str,
        detail: str | None = None,
        retry_at: datetime | None = None,
        now: datetime | None = None,
    ) -> list[int]:
        """Move records to `state` (releasing their claim); returns the ids that moved."""
        ...

    async def sweep_parked(self, *, now: datetime | None = None) -> int:
        """Parked records whose original is posted go back to work; returns how many. The
        posting of an original releases its parked records itself; this catches the one
        that arrived while that posting was being committed (neither saw the other)."""
        ...

    async def expire_parked(
        self, max_age: timedelta, *, now: datetime | None = None
    ) -> list[int]: ...

    async def history(self, record_id: int) -> list[tuple[str, datetime, str | None]]: ...

    async def record_by_key(self, key: str) -> ClaimedRecord | None: ...

    async def record_heartbeat(
        self, heartbeat: Heartbeat, *, now: datetime | None = None
    ) -> None: ...

    async def gaps(self, store: str | None = None) -> list[Gap]: ...

    async def due_gaps(
        self,
        grace: timedelta,
        *,
        limit: int = 100,
        max_requests: int = 10,
        now: datetime | None = None,
    ) -> list[Gap]:
        """Gaps older than `grace` whose next request is due, marked as asked now. Each
        request doubles the wait before the next (up to 64 × `grace`); a gap asked for
        `max_requests` times becomes an exception for a person and is not asked for again.
        A request counts only when the store could have answered it: not while it is
        offline, nor while its last heartbeat reported rows still to send."""
        ...

    async def releases(self, store: str | None = None, *, limit: int = 100) -> list[Released]:
        """Seqs stores said they will never send, newest first: why each gap closed."""
        ...

    async def stores(self) -> list[StoreStatus]: ...


class Deliveries(Protocol):
    """Delivery: one row per record and target, routed, claimed by a worker under a lease
    and finished with the target's answer; the audit trail of every step."""

    async def route_records(
        self, decisions: Sequence[RouteDecision], *, now: datetime | None = None
    ) -> None: ...

    async def settle_refused(
        self, records: Sequence[tuple[int, str, str]], *, now: datetime | None = None
    ) -> list[tuple[int, str]]: ...

    async def claim_deliveries(
        self,
        target: str,
        n: int,
        relay_id: str,
        lease: timedelta,
        *,
        now: datetime | None = None,
    ) -> list[DeliveryItem]: ...

    async def finish_deliveries(
        self,
        target: str,
        updates: Sequence[DeliveryUpdate],
        *,
        relay_id: str,
        now: datetime | None = None,
    ) -> None: ...

    async def deliveries_of(self, record_id: int) -> list[dict[str, Any]]: ...

    async def delivery_stats(self) -> dict[str, dict[str, int]]: ...

    async def audit_trail(self, record_id: int) -> list[AuditEntry]: ...

    async def purge_audit(self, older_than: timedelta, *, now: datetime | None = None) -> int: ...


class ExceptionQueue(Protocol):
    """The exception queue: what needs a person, listed, retried or resolved."""

    async def exceptions(
        self,
        limit: int = 100,
        *,
        include_closed: bool = False,
        store: str | None = None,
        target: str | None = None,
    ) -> list[ExceptionItem]: ...

    async def exception(self, exception_id: int) -> ExceptionItem | None: ...

    async def retry_exception(
        self, exception_id: int, *, by: str, now: datetime | None = None
    ) -> str: ...

    async def resolve_exception(
        self, exception_id: int, note: str, *, by: str, now: datetime | None = None
    ) -> None: ...


class Views(Protocol):
    """What people and reconciliation read: a store's business day, the closed days,
    searches, a record, throughput, latencies and counts."""

    async def day_records(self, store: str, business_date: date) -> list[DayRecord]: ...

    async def order_day(self, store: str, day: date) -> OrderDay:
        """The online orders central received for `store` on `day` (UTC date of the
        first version's queued_at), each counted once, in the state of its newest
        version."""
        ...

    async def closed_days(self, limit: int = 200) -> list[tuple[str, date]]: ...

    async def search_records(
        self,
        text: str = "",
        *,
        store: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[dict[str, Any]]: ...

    async def record(self, record_id: int) -> dict[str, Any] | None: ...

    async def throughput(self, minutes: int = 60, *, now: datetime | None = None) -> list[int]: ...

    async def delivery_latencies(self, *, since: timedelta = ...) -> list[float]: ...

    async def stats(self) -> dict[str, Any]: ...

    async def ping(self) -> None: ...


@dataclass(frozen=True)
class DownRow:
    """One message of a store's downlink queue."""

    store: str
    seq: int
    kind: str
    key: str
    body: str  # JSON of the message (contract.down_body_adapter)
    queued_at: datetime
    sent_at: datetime | None = None
    sends: int = 0
    settled_at: datetime | None = None


@dataclass(frozen=True)
class OrderDay:
    """A store's online orders of one day for reconciliation: each order number counted
    once, on the UTC day central first queued it, in the state of its newest version."""

    store: str
    day: date
    received: int = 0
    handed: int = 0  # the store acknowledged the newest version (settled_at set)
    fulfilled: dict[str, int] = field(default_factory=dict)  # by the POS's status
    cancelled_online: int = 0  # the platform sent a cancellation for the order

    @property
    def fulfilled_total(self) -> int:
        return sum(self.fulfilled.values())


@dataclass(frozen=True)
class DownlinkSummary:
    """A store's downlink as the dashboard and `stats` show it."""

    store: str
    pending: int  # queued and not yet answered by the store
    delivered: int  # answered by the store
    oldest_waiting: datetime | None  # queued_at of the oldest pending message
    last_settled: datetime | None
    past_promise: int  # orders delivered to the store, not fulfilled, past promised_by


class Downlink(Protocol):
    """The way down: each store's durable queue with its own gap-free seq, the order
    sources' cursors, and what central knows of each order it sent."""

    async def enqueue(self, store: str, kind: str, key: str, body: str) -> tuple[int, bool]:
        """Queue a message for `store` under the next seq of its downlink, once per `key`:
        (seq, True) when queued now, (the existing seq, False) when the key was queued
        before. The seq is gap-free per store, also with several relays."""
        ...

    async def due_down(
        self, *, resend_after: timedelta, limit: int = 100, now: datetime | None = None
    ) -> dict[str, list[DownRow]]:
        """Per store, its unanswered messages in seq order (at most `limit` each) that were
        never sent or were last sent more than `resend_after` ago."""
        ...

    async def pending_down(self, store: str, *, limit: int = 100) -> list[DownRow]:
        """A store's unanswered messages in seq order, sent or not (for a store that has
        just come back online)."""
        ...

    async def mark_down_sent(
        self, store: str, seqs: Sequence[int], *, now: datetime | None = None
    ) -> None: ...

    async def settle_down(
        self, store: str, seqs: Sequence[int], through: int, *, now: datetime | None = None
    ) -> int:
        """The store holds `seqs` and every seq up to `through`: mark them answered (only
        seqs that exist for that store). Returns how many changed."""
        ...

    async def down_order(self, store: str, order_number: str) -> DownRow | None:
        """The newest `order` message queued for `store` with that order number (so a
        fulfilment can be posted to the order's own target)."""
        ...

    async def mark_fulfilled(self, store: str, order_number: str, status: str) -> None:
        """Note what the store did with an order (for the past-promise count and recon)."""
        ...

    async def downlink_summary(self, *, now: datetime | None = None) -> list[DownlinkSummary]: ...

    async def source_cursor(self, name: str) -> str | None:
        """The durable cursor of an order source (None before its first run)."""
        ...

    async def advance_cursor(self, name: str, before: str | None, after: str) -> bool:
        """Move a source's cursor from `before` to `after` only if it still is `before`
        (compare-and-set), so two relays never both advance past the same orders."""
        ...


class Inbox(Records, Deliveries, ExceptionQueue, Views, Downlink, Reference, Protocol):
    """The relay's durable store, every role over one database: every record once, its
    state, each store's stream, delivery, the exception queue, the views, the way
    down and the reference data it fans out."""

    relay_id: str

    async def close(self) -> None: ...
