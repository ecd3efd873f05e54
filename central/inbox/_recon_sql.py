"""What reconciliation reads from the inbox: one store's records of one business day
with the targets that confirmed each, and the days stores have closed."""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from ._deliveries import DeliverySql
from ._model import DayRecord
from ._sql import Conn, _chunks, _marks

__all__ = ["ReconSql"]


class ReconSql(DeliverySql):
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
            for part in _chunks([r[0] for r in day]):
                for rid, target in await c.fetch(
                    "SELECT record_id, target FROM deliveries WHERE state = 'posted' "
                    f"AND record_id IN ({_marks(len(part))})",
                    part,
                ):
                    posted.setdefault(rid, []).append(target)
            return [
                DayRecord(rid, kind, state, b, posted.get(rid, [])) for rid, kind, state, b in day
            ]

        return await self._run(body)

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
