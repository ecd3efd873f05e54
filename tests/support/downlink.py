"""A small in-memory `Downlink` (and the intake's `record_refusal`) for the order-source
and fulfilment tests, until the SQL backends implement the protocol: a gap-free seq per
store, one message per key, compare-and-set cursors. It holds what the protocol
promises and no more; the SQL backends prove it under two relays."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from central.inbox import DownlinkSummary, DownRow, utcnow
from contract import down_body_adapter


@dataclass(frozen=True)
class Refused:
    kind: str
    store: str
    batch_id: str | None
    reason: str


class MemoryDownlink:
    def __init__(self) -> None:
        self.rows: dict[str, list[DownRow]] = {}
        self.keys: dict[str, tuple[str, int]] = {}
        self.cursors: dict[str, str] = {}
        self.fulfilled: dict[tuple[str, str], str] = {}
        self.refusals: list[Refused] = []
        self._lock = asyncio.Lock()

    async def enqueue(self, store: str, kind: str, key: str, body: str) -> tuple[int, bool]:
        async with self._lock:
            if key in self.keys:
                return self.keys[key][1], False
            rows = self.rows.setdefault(store, [])
            seq = len(rows) + 1
            rows.append(DownRow(store, seq, kind, key, body, utcnow()))
            self.keys[key] = (store, seq)
            return seq, True

    async def due_down(
        self, *, resend_after: timedelta, limit: int = 100, now: datetime | None = None
    ) -> dict[str, list[DownRow]]:
        now = now or utcnow()
        return {
            store: due[:limit]
            for store, rows in self.rows.items()
            if (
                due := [
                    r
                    for r in rows
                    if r.settled_at is None
                    and (r.sent_at is None or now - r.sent_at > resend_after)
                ]
            )
        }

    async def pending_down(self, store: str, *, limit: int = 100) -> list[DownRow]:
        return [r for r in self.rows.get(store, []) if r.settled_at is None][:limit]

    async def mark_down_sent(
        self, store: str, seqs: Sequence[int], *, now: datetime | None = None
    ) -> None:
        rows = self.rows.get(store, [])
        for i, row in enumerate(rows):
            if row.seq in seqs:
                rows[i] = replace(row, sent_at=now or utcnow(), sends=row.sends + 1)

    async def settle_down(
        self, store: str, seqs: Sequence[int], through: int, *, now: datetime | None = None
    ) -> int:
        changed = 0
        rows = self.rows.get(store, [])
        for i, row in enumerate(rows):
            if row.settled_at is None and (row.seq in seqs or row.seq <= through):
                rows[i] = replace(row, settled_at=now or utcnow())
                changed += 1
        return changed

    async def down_order(self, store: str, order_number: str) -> DownRow | None:
        for row in reversed(self.rows.get(store, [])):
            if row.kind != "order":
                continue
            body = down_body_adapter.validate_json(row.body)
            if body.order_number == order_number:
                return row
        return None

    async def mark_fulfilled(self, store: str, order_number: str, status: str) -> None:
        self.fulfilled[(store, order_number)] = status

    async def downlink_summary(self, *, now: datetime | None = None) -> list[DownlinkSummary]:
        return [
            DownlinkSummary(
                store=store,
                pending=sum(1 for r in rows if r.settled_at is None),
                delivered=sum(1 for r in rows if r.settled_at is not None),
                oldest_waiting=min(
                    (r.queued_at for r in rows if r.settled_at is None), default=None
                ),
                last_settled=max((r.settled_at for r in rows if r.settled_at), default=None),
                past_promise=0,
            )
            for store, rows in self.rows.items()
        ]

    async def source_cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    async def advance_cursor(self, name: str, before: str | None, after: str) -> bool:
        async with self._lock:
            if self.cursors.get(name) != before:
                return False
            self.cursors[name] = after
            return True

    async def record_refusal(
        self,
        kind: str,
        topic_store: str,
        envelope_store: str | None,
        batch_id: str | None,
        reason: str,
        *,
        now: datetime | None = None,
    ) -> None:
        self.refusals.append(Refused(kind, topic_store, batch_id, reason))

    def messages(self, store: str) -> list[dict[str, object]]:
        """The bodies queued for `store`, in seq order."""
        return [
            down_body_adapter.dump_python(down_body_adapter.validate_json(r.body), mode="json")
            for r in self.rows.get(store, [])
        ]
