"""The end-of-day role of the outbox: a business day's transactions, skipped and refused
counts, the days still to summarise, and the summary record itself."""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

import json
import logging
import time

import aiosqlite

from common.logs import correlation_id as bound_correlation_id
from common.logs import new_correlation_id
from contract import Record, Transaction

from ._intake import FileCounts, Intake

__all__ = ["TRANSACTION_KINDS", "Days"]

log = logging.getLogger("tillbridge.agent.outbox")

TRANSACTION_KINDS = ("sale", "return", "void", "cancel")
_KIND_MARKS = ",".join("?" * len(TRANSACTION_KINDS))


class Days(Intake):
    """The outbox's end of day: what a business day holds, and its summary."""

    async def day_transactions(self, business_date: str) -> tuple[list[Transaction], int]:
        """The transactions of a business day still in the outbox, for its summary, and the
        highest seq among them (what the summary covers)."""
        out: list[Transaction] = []
        last_seq = 0
        async with self._reader.execute(
            "SELECT r.seq, r.key, b.wire, r.sealed FROM records AS r "
            "JOIN bodies AS b ON b.seq = r.seq "
            f"WHERE r.business_date = ? AND r.kind IN ({_KIND_MARKS}) ORDER BY r.seq",
            (business_date, *TRANSACTION_KINDS),
        ) as cur:
            async for seq, key, body, sealed in cur:
                data = self._sealer.open(bytes(body), key) if sealed else bytes(body)
                out.append(Transaction.model_validate(json.loads(data)["body"]))
                last_seq = int(seq)
        return out, last_seq

    async def day_skipped(self, business_date: str) -> dict[str, int]:
        async with self._reader.execute(
            "SELECT reason, count FROM skipped WHERE business_date = ?", (business_date,)
        ) as cur:
            return {str(r[0]): int(r[1]) for r in await cur.fetchall()}

    async def day_refused(self, business_date: str) -> int:
        """How many transactions of a day were refused one by one (`refused` records)."""
        async with self._reader.execute(
            "SELECT count(*) FROM records WHERE business_date = ? AND kind = 'refused'",
            (business_date,),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def days_to_summarise(self, closed_before: str) -> list[tuple[str, int]]:
        """(business date, revision) of closed days never summarised or changed since."""
        async with self._reader.execute(
            f"""
            SELECT d.business_date, coalesce(s.revision, 0) FROM (
                SELECT business_date, max(seq) AS last_seq FROM records
                WHERE kind IN ({_KIND_MARKS}) AND business_date < ? GROUP BY business_date
                UNION
                SELECT business_date, 0 FROM skipped WHERE business_date != '' AND business_date < ?
            ) AS d LEFT JOIN days AS s ON s.business_date = d.business_date
            GROUP BY d.business_date
            HAVING s.revision IS NULL OR max(d.last_seq) > s.last_seq
            ORDER BY d.business_date
            """,
            (*TRANSACTION_KINDS, closed_before, closed_before),
        ) as cur:
            return [(str(r[0]), int(r[1]) + 1) for r in await cur.fetchall()]

    async def add_day_summary(
        self, business_date: str, revision: int, records: list[Record], covered: int
    ) -> None:
        """Queue a day's summary and remember the last seq it covered: records of that day
        committed later raise the next revision."""
        correlation_id = bound_correlation_id() or new_correlation_id()

        async def job(db: aiosqlite.Connection) -> None:
            await self._insert(db, list(records), correlation_id, FileCounts())
            await db.execute(
                "INSERT OR REPLACE INTO days VALUES (?, ?, ?, ?)",
                (business_date, revision, time.time(), covered),
            )

        await self._writer.submit(job)
        self._committed(len(records))
