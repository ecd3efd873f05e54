"""The way down in the inbox: each store's durable downlink queue with its own gap-free
seq, the store's answers, what central knows of each order it sent, and the cursors of
the order sources.

The seq comes from the store's `down_stores` row, locked by the upsert that reads it in
the same transaction that queues the message: a second relay queueing for that store
waits for the first to commit, then numbers on from it. The key is looked up only after
that lock, so a message queued twice at once is queued once and uses no seq twice.
"""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from contract import OnlineOrder, OrderCancel, down_body_adapter

from ._model import DownlinkSummary, DownRow, utcnow
from ._sql import Conn, SqlInbox, _chunks, _marks

__all__ = ["DownlinkSql"]

_ROW_COLUMNS = "store, seq, kind, key, body, queued_at, sent_at, sends, settled_at"
_FINAL = ("picked_up", "shipped", "cancelled")
"""Fulfilment statuses after which an order no longer waits at the store."""


def _utc(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


class DownlinkSql(SqlInbox):
    """The downlink role of the inbox."""

    def _down(self, r: Sequence[Any]) -> DownRow:
        return DownRow(
            store=r[0],
            seq=r[1],
            kind=r[2],
            key=r[3],
            body=r[4],
            queued_at=self._dt(r[5]),
            sent_at=self._dt(r[6]) if r[6] is not None else None,
            sends=r[7],
            settled_at=self._dt(r[8]) if r[8] is not None else None,
        )

    async def enqueue(
        self, store: str, kind: str, key: str, body: str, *, now: datetime | None = None
    ) -> tuple[int, bool]:
        """Queue a message under the store's next seq, once per key. The body must be a
        message of that kind for that store: one the agent would refuse is never queued
        (ValueError), since it would hold up every message behind it."""
        try:
            message = down_body_adapter.validate_json(body)
        except ValidationError as exc:
            raise ValueError(
                f"downlink message for {store} is invalid: {exc.errors()[0]['msg']}"
            ) from None
        # Orders name their store; reference data is fanned out to the stores it concerns.
        named = message.store if isinstance(message, OnlineOrder | OrderCancel) else store
        if message.kind != kind or named != store:
            raise ValueError(
                f"downlink message is a {message.kind} for {named}, not a {kind} for {store}"
            )
        promised = message.promised_by if isinstance(message, OnlineOrder) else None
        number = message.order_number if isinstance(message, OnlineOrder | OrderCancel) else None
        at = self._ts(now or utcnow())

        async def work(c: Conn) -> tuple[int, bool]:
            # Locks the store's counter until commit (the upsert changes nothing yet).
            ((last,),) = await c.fetch(
                "INSERT INTO down_stores (store, last_seq) VALUES (?, 0) "
                "ON CONFLICT (store) DO UPDATE SET last_seq = down_stores.last_seq "
                "RETURNING last_seq",
                (store,),
            )
            known = await c.fetch(
                "SELECT seq FROM downlink WHERE store = ? AND key = ?", (store, key)
            )
            if known:
                return known[0][0], False
            seq = last + 1
            await c.run("UPDATE down_stores SET last_seq = ? WHERE store = ?", (seq, store))
            await c.run(
                "INSERT INTO downlink (store, seq, kind, key, order_number, promised_by, body, "
                "queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    store,
                    seq,
                    kind,
                    key,
                    number,
                    None if promised is None else self._ts(promised),
                    body,
                    at,
                ),
            )
            return seq, True

        return await self._run(work)

    async def due_down(
        self, *, resend_after: timedelta, limit: int = 100, now: datetime | None = None
    ) -> dict[str, list[DownRow]]:
        moment = now or utcnow()
        before = self._ts(moment - resend_after)

        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                f"SELECT {_ROW_COLUMNS} FROM (SELECT {_ROW_COLUMNS}, "
                "ROW_NUMBER() OVER (PARTITION BY store ORDER BY seq) AS n FROM downlink "
                "WHERE settled_at IS NULL AND (sent_at IS NULL OR sent_at <= ?)) due "
                "WHERE n <= ? ORDER BY store, seq",
                (before, limit),
            )

        due: dict[str, list[DownRow]] = {}
        for r in await self._run(work):
            due.setdefault(r[0], []).append(self._down(r))
        return due

    async def pending_down(self, store: str, *, limit: int = 100) -> list[DownRow]:
        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                f"SELECT {_ROW_COLUMNS} FROM downlink WHERE store = ? AND settled_at IS NULL "
                "ORDER BY seq LIMIT ?",
                (store, limit),
            )

        return [self._down(r) for r in await self._run(work)]

    async def mark_down_sent(
        self, store: str, seqs: Sequence[int], *, now: datetime | None = None
    ) -> None:
        at = self._ts(now or utcnow())

        async def work(c: Conn) -> None:
            for part in _chunks(sorted(set(seqs))):
                await c.run(
                    "UPDATE downlink SET sent_at = ?, sends = sends + 1 "
                    f"WHERE store = ? AND seq IN ({_marks(len(part))})",
                    (at, store, *part),
                )

        await self._run(work)

    async def settle_down(
        self, store: str, seqs: Sequence[int], through: int, *, now: datetime | None = None
    ) -> int:
        at = self._ts(now or utcnow())
        listed = sorted({s for s in seqs if s > through})

        async def work(c: Conn) -> int:
            changed = await c.fetch(
                "UPDATE downlink SET settled_at = ? "
                "WHERE store = ? AND seq <= ? AND settled_at IS NULL RETURNING seq",
                (at, store, through),
            )
            count = len(changed)
            for part in _chunks(listed):
                changed = await c.fetch(
                    "UPDATE downlink SET settled_at = ? WHERE store = ? AND settled_at IS NULL "
                    f"AND seq IN ({_marks(len(part))}) RETURNING seq",
                    (at, store, *part),
                )
                count += len(changed)
            return count

        return await self._run(work)

    async def down_order(self, store: str, order_number: str) -> DownRow | None:
        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                f"SELECT {_ROW_COLUMNS} FROM downlink WHERE store = ? AND order_number = ? "
                "AND kind = 'order' ORDER BY seq DESC LIMIT 1",
                (store, order_number),
            )

        rows = await self._run(work)
        return self._down(rows[0]) if rows else None

    async def mark_fulfilled(
        self, store: str, order_number: str, status: str, *, now: datetime | None = None
    ) -> None:
        at = self._ts(now or utcnow())

        async def work(c: Conn) -> None:
            await c.run(
                "UPDATE downlink SET fulfilled = ?, fulfilled_at = ? "
                "WHERE store = ? AND order_number = ? AND kind = 'order'",
                (status, at, store, order_number),
            )

        await self._run(work)

    async def downlink_summary(self, *, now: datetime | None = None) -> list[DownlinkSummary]:
        """Per store with a downlink: pending, delivered, the oldest waiting, and orders
        the store holds, has not finished and whose promised time has passed (only an
        order's newest version counts, and never one cancelled since)."""
        moment = self._ts(now or utcnow())

        async def work(c: Conn) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            counts = await c.fetch(
                "SELECT store, SUM(CASE WHEN settled_at IS NULL THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN settled_at IS NULL THEN 0 ELSE 1 END), "
                "MIN(CASE WHEN settled_at IS NULL THEN queued_at END), MAX(settled_at) "
                "FROM downlink GROUP BY store ORDER BY store"
            )
            late = await c.fetch(
                "SELECT o.store, COUNT(*) FROM downlink o WHERE o.kind = 'order' "
                "AND o.settled_at IS NOT NULL AND o.promised_by IS NOT NULL "
                f"AND o.promised_by < ? AND (o.fulfilled IS NULL OR o.fulfilled NOT IN "
                f"({_marks(len(_FINAL))})) "
                "AND o.seq = (SELECT MAX(n.seq) FROM downlink n WHERE n.store = o.store "
                "AND n.order_number = o.order_number AND n.kind = 'order') "
                "AND NOT EXISTS (SELECT 1 FROM downlink x WHERE x.store = o.store "
                "AND x.order_number = o.order_number AND x.kind = 'order_cancel') "
                "GROUP BY o.store",
                (moment, *_FINAL),
            )
            return counts, late

        counts, late = await self._run(work)
        past: dict[str, int] = dict(late)
        return [
            DownlinkSummary(
                store=store,
                pending=int(pending or 0),
                delivered=int(delivered or 0),
                oldest_waiting=self._dt(oldest) if oldest is not None else None,
                last_settled=self._dt(settled) if settled is not None else None,
                past_promise=int(past.get(store, 0)),
            )
            for store, pending, delivered, oldest, settled in counts
        ]

    async def source_cursor(self, name: str) -> str | None:
        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch("SELECT position FROM source_cursors WHERE name = ?", (name,))

        rows = await self._run(work)
        return str(rows[0][0]) if rows else None

    async def advance_cursor(
        self, name: str, before: str | None, after: str, *, now: datetime | None = None
    ) -> bool:
        at = self._ts(now or utcnow())

        async def work(c: Conn) -> list[tuple[Any, ...]]:
            if before is None:
                return await c.fetch(
                    "INSERT INTO source_cursors (name, position, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO NOTHING RETURNING name",
                    (name, after, at),
                )
            return await c.fetch(
                "UPDATE source_cursors SET position = ?, updated_at = ? "
                "WHERE name = ? AND position = ? RETURNING name",
                (after, at, name, before),
            )

        return bool(await self._run(work))

    async def downlink_stats(self) -> dict[str, dict[str, Any]]:
        """`downlink_summary` as plain JSON values, per store, for `stats` and the API, with
        what the store's last heartbeat said: orders it holds and has not yet written to
        the POS, and how many of them are past its alert time (None before it said)."""

        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT store, orders_waiting, orders_alert FROM stores "
                "WHERE orders_waiting IS NOT NULL OR orders_alert IS NOT NULL"
            )

        at_store = {store: (waiting, alert) for store, waiting, alert in await self._run(work)}
        shown: dict[str, dict[str, Any]] = {}
        for s in await self.downlink_summary():
            waiting, alert = at_store.pop(s.store, (None, None))
            shown[s.store] = {
                "pending": s.pending,
                "delivered": s.delivered,
                "oldest_waiting": _utc(s.oldest_waiting),
                "last_settled": _utc(s.last_settled),
                "past_promise": s.past_promise,
                "orders_waiting": waiting,
                "orders_alert": alert,
            }
        for store, (waiting, alert) in sorted(at_store.items()):
            if not (waiting or alert):
                continue  # a store with no downlink that holds no order: nothing to show
            # A store still holding orders that central no longer has in its queue.
            shown[store] = {
                "pending": 0,
                "delivered": 0,
                "oldest_waiting": None,
                "last_settled": None,
                "past_promise": 0,
                "orders_waiting": waiting,
                "orders_alert": alert,
            }
        return shown
