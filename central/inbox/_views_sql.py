"""What people and reconciliation read from the inbox: one store's records of one business
day with the targets that confirmed each, its online orders of a day, the days stores
have closed, and the searches and counts behind the dashboard and the API."""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ._model import DayRecord, OrderDay
from ._sql import Conn, SqlInbox, _chunks, _marks

__all__ = ["ViewsSql"]


class _ReconSql(SqlInbox):
    """What reconciliation reads: one store's records of one business day, and the days
    for which a store sent its end-of-day totals."""

    async def day_records(self, store: str, business_date: date) -> list[DayRecord]:
        # occurred_at is near the business day (a day may close after midnight):
        # narrow by it, then keep the records whose own business_date matches.
        start = datetime.combine(business_date - timedelta(days=2), time(0), tzinfo=UTC)
        end = datetime.combine(business_date + timedelta(days=3), time(0), tzinfo=UTC)

        async def body(c: Conn) -> list[DayRecord]:
            rows = await c.fetch(
                "SELECT id, kind, state, body FROM records WHERE store = ? "
                "AND occurred_at >= ? AND occurred_at < ? ORDER BY id",
                (store, self._ts(start), self._ts(end)),
            )
            wanted = business_date.isoformat()
            day = [(rid, kind, state, self._obj(b)) for rid, kind, state, b in rows]
            day = [r for r in day if r[3].get("business_date") == wanted]
            posted: dict[int, list[str]] = {}
            confirmed: dict[int, dict[str, str]] = {}
            for part in _chunks([r[0] for r in day]):
                for rid, target, amount in await c.fetch(
                    "SELECT record_id, target, confirmed FROM deliveries WHERE state = 'posted' "
                    f"AND record_id IN ({_marks(len(part))})",
                    part,
                ):
                    posted.setdefault(rid, []).append(target)
                    if amount is not None:
                        confirmed.setdefault(rid, {})[target] = str(amount)
            return [
                DayRecord(rid, kind, state, b, posted.get(rid, []), confirmed.get(rid, {}))
                for rid, kind, state, b in day
            ]

        return await self._run(body)

    async def order_day(self, store: str, day: date) -> OrderDay:
        # An order belongs to the UTC day its first version was queued (an amendment is
        # not a new order); its newest version says whether the store holds it.
        start = datetime.combine(day, time(0), tzinfo=UTC)
        end = start + timedelta(days=1)

        async def body(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT n.settled_at IS NOT NULL, n.fulfilled, CASE WHEN EXISTS (SELECT 1 "
                "FROM downlink x WHERE x.store = n.store AND x.order_number = n.order_number "
                "AND x.kind = 'order_cancel') THEN 1 ELSE 0 END FROM downlink n JOIN ("
                "SELECT order_number, MIN(queued_at) AS first_at, MAX(seq) AS last_seq "
                "FROM downlink WHERE store = ? AND kind = 'order' GROUP BY order_number"
                ") o ON o.last_seq = n.seq "
                "WHERE n.store = ? AND o.first_at >= ? AND o.first_at < ?",
                (store, store, self._ts(start), self._ts(end)),
            )

        rows = await self._run(body)
        fulfilled: dict[str, int] = {}
        for _, status, _ in rows:
            if status is not None:
                fulfilled[status] = fulfilled.get(status, 0) + 1
        return OrderDay(
            store=store,
            day=day,
            received=len(rows),
            handed=sum(1 for held, _, _ in rows if held),
            fulfilled=fulfilled,
            cancelled_online=sum(1 for _, _, withdrawn in rows if withdrawn),
        )

    async def closed_days(self, limit: int = 200) -> list[tuple[str, date]]:
        """(store, business date) of the latest end-of-day records, newest first."""

        async def body(c: Conn) -> list[tuple[str, date]]:
            rows = await c.fetch(
                "SELECT store, body FROM records WHERE kind = 'end_of_day' ORDER BY id DESC "
                "LIMIT ?",
                (limit * 4,),
            )
            seen: dict[tuple[str, date], None] = {}
            for store, b in rows:
                seen.setdefault((store, date.fromisoformat(self._obj(b)["business_date"])), None)
            return list(seen)[:limit]

        return await self._run(body)


class ViewsSql(_ReconSql):
    """What the dashboard and the API read beside the contract: searches and counts."""

    json_text = "json_extract(body, '$.{field}')"

    def _field(self, name: str) -> str:
        return self.json_text.format(field=name)

    async def search_records(
        self,
        text: str = "",
        *,
        store: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """Records whose key, transaction id or correlation id is `text`, newest first; at
        least 1 and at most 500 (a negative LIMIT means no limit on SQLite, an error on
        PostgreSQL: neither reaches the database). `before`: only records older than that
        record id, for the next page."""
        limit = max(1, min(int(limit), 500))
        where: list[str] = ["1 = 1"]
        params: list[str | int] = []
        if before is not None:
            where.append("id < ?")
            params.append(int(before))
        if text:
            where.append(f"(key = ? OR correlation_id = ? OR {self._field('transaction_id')} = ?)")
            params += [text, text, text]
        if store:
            where.append("store = ?")
            params.append(store)

        async def body(c: Conn) -> list[dict[str, Any]]:
            rows = await c.fetch(
                "SELECT id, key, store, seq, kind, state, correlation_id, received_at, "
                f"{self._field('transaction_id')}, {self._field('total')} FROM records "
                f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                (*params, limit),
            )
            return [
                {
                    "id": r[0],
                    "key": r[1],
                    "store": r[2],
                    "seq": r[3],
                    "kind": r[4],
                    "state": r[5],
                    "correlation_id": r[6],
                    "received_at": self._dt(r[7]).isoformat(),
                    "transaction_id": r[8],
                    "total": None if r[9] is None else str(r[9]),
                }
                for r in rows
            ]

        return await self._run(body)

    async def record(self, record_id: int) -> dict[str, Any] | None:
        async def body(c: Conn) -> dict[str, Any] | None:
            rows = await c.fetch(
                "SELECT id, key, store, seq, kind, state, correlation_id, received_at, body, "
                "attempts FROM records WHERE id = ?",
                (record_id,),
            )
            if not rows:
                return None
            r = rows[0]
            return {
                "id": r[0],
                "key": r[1],
                "store": r[2],
                "seq": r[3],
                "kind": r[4],
                "state": r[5],
                "correlation_id": r[6],
                "received_at": self._dt(r[7]).isoformat(),
                "body": self._obj(r[8]),
            }

        return await self._run(body)

    async def throughput(self, minutes: int = 60, *, now: datetime | None = None) -> list[int]:
        """Records received per minute over the last `minutes`, oldest first."""
        moment = now or datetime.now(UTC)
        start = moment - timedelta(minutes=minutes)

        async def body(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT received_at FROM records WHERE received_at >= ?", (self._ts(start),)
            )

        counts = [0] * minutes
        for (at,) in await self._run(body):
            index = int((self._dt(at) - start).total_seconds() // 60)
            if 0 <= index < minutes:
                counts[index] += 1
        return counts

    async def delivery_latencies(self, *, since: timedelta = timedelta(hours=1)) -> list[float]:
        """Seconds from receipt to the target's confirmation, for recent deliveries."""
        cutoff = self._ts(datetime.now(UTC) - since)

        async def body(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT r.received_at, d.posted_at FROM deliveries d JOIN records r "
                "ON r.id = d.record_id WHERE d.state = 'posted' AND d.posted_at >= ?",
                (cutoff,),
            )

        return [
            max((self._dt(posted) - self._dt(received)).total_seconds(), 0.0)
            for received, posted in await self._run(body)
        ]
