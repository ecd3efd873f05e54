"""The intake role of the outbox (the sources' FileSink): a file's records and its
"ingested" mark commit in one transaction; each record gets the next gap-free `seq`; a
key already present is not inserted again."""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import aiosqlite

from agent import _failpoints as failpoints
from agent.parsers import Parsed, Skipped, bounded
from agent.sources import BudgetReached, IngestFile, IngestOutcome
from common.logs import correlation_id as bound_correlation_id
from common.logs import new_correlation_id
from contract import Inventory, Record, record_json

from ._budget import Budget

__all__ = ["CHUNK", "Intake"]

log = logging.getLogger("tillbridge.agent.outbox")

CHUNK = 500  # records parsed, checked and inserted together (SQLite allows 32k parameters)


@dataclasses.dataclass(slots=True)
class FileCounts:
    inserted: int = 0
    duplicates: int = 0
    skipped: int = 0
    unchanged: int = 0


def next_chunk(items: Iterator[Parsed], n: int) -> list[Parsed]:
    out: list[Parsed] = []
    for item in items:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _has_contact(record: Record) -> bool:
    customer = getattr(record, "customer", None)
    if customer is None:
        return False
    return any((customer.email, customer.phone, customer.first_name, customer.last_name))


def _business_date(record: Record) -> str:
    return record.business_date.isoformat()


class Intake(Budget):
    """The outbox's intake: files' records committed with their ingested mark."""

    async def is_ingested(self, sha256: str) -> bool:
        async with self._reader.execute("SELECT 1 FROM files WHERE sha256 = ?", (sha256,)) as cur:
            return await cur.fetchone() is not None

    async def ingest(
        self, file: IngestFile, items: Iterator[Parsed], *, budget: bool = True
    ) -> IngestOutcome:
        """Commit a file's records and its mark together; nothing of it when parsing fails.

        Within the budget (`budget=False` for the archive's re-read, which must go
        through): a file that would take the unacknowledged rows or bytes past a limit is
        rolled back and raises BudgetReached, so the outbox never holds more than its
        budget and one chunk (checked after each). A file meeting an outbox that holds
        nothing unacknowledged goes in whole, whatever its size: nothing would drain to
        make room for it."""
        correlation_id = bound_correlation_id() or new_correlation_id()
        mirror = self._mirror

        async def job(db: aiosqlite.Connection) -> IngestOutcome:
            async with db.execute("SELECT 1 FROM files WHERE sha256 = ?", (file.sha256,)) as cur:
                if await cur.fetchone() is not None:
                    return IngestOutcome(0, 0, 0, already_ingested=True)
            held = (mirror.unacked_rows, mirror.unacked_bytes)
            counts = FileCounts()
            while chunk := await asyncio.to_thread(next_chunk, items, CHUNK):
                await self._insert(db, chunk, correlation_id, counts)
                if budget and held[0] and self._over_budget():
                    needed = (mirror.unacked_rows - held[0], mirror.unacked_bytes - held[1])
                    raise BudgetReached(
                        f"{file.name} needs room for at least {needed[0]} records "
                        f"({needed[1]} bytes) beyond the outbox budget",
                        *needed,
                    )
            await db.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    file.sha256,
                    file.source,
                    file.name,
                    file.size,
                    time.time(),
                    counts.inserted,
                    counts.duplicates,
                    counts.skipped,
                    counts.unchanged,
                ),
            )
            failpoints.hit("ingest.committing")
            return IngestOutcome(counts.inserted, counts.duplicates, counts.skipped)

        try:
            outcome: IngestOutcome = await self._writer.submit(job)
        except BudgetReached as exc:
            # Rolled back: hold intake until the backlog has drained enough for it.
            self._waiting = (max(self._waiting[0], exc.records), max(self._waiting[1], exc.size))
            self._check_budget()
            raise
        failpoints.hit("ingest.committed")
        self._waiting = (0, 0)
        self._committed(outcome.inserted)
        return outcome

    async def add(self, records: Iterable[Record]) -> IngestOutcome:
        """Commit records that no file brought (end-of-day summaries)."""
        chunk: list[Parsed] = list(records)
        correlation_id = bound_correlation_id() or new_correlation_id()

        async def job(db: aiosqlite.Connection) -> IngestOutcome:
            counts = FileCounts()
            await self._insert(db, chunk, correlation_id, counts)
            return IngestOutcome(counts.inserted, counts.duplicates, counts.skipped)

        outcome: IngestOutcome = await self._writer.submit(job)
        self._committed(outcome.inserted)
        return outcome

    async def _insert(
        self,
        db: aiosqlite.Connection,
        chunk: list[Parsed],
        correlation_id: str,
        counts: FileCounts,
    ) -> None:
        records: list[Record] = []
        for item in chunk:
            if isinstance(item, Skipped):
                counts.skipped += 1
                day = item.business_date.isoformat() if item.business_date else ""
                await db.execute(
                    "INSERT INTO skipped VALUES (?, ?, 1) ON CONFLICT (business_date, reason) "
                    "DO UPDATE SET count = count + 1",
                    (day, item.reason),
                )
            else:
                records.append(item)
        if not records:
            return
        # The JSON is written once; a record over the relay's limits becomes its own
        # refusal here, so it is never sent to be refused there.
        limits = self.limits
        texts: list[str] = []
        for index, record in enumerate(records):
            records[index], text = bounded(record, record.model_dump_json(), limits)
            texts.append(text)
        present = await self._present_keys(db, [r.key for r in records])
        levels = await self._levels(db, [r for r in records if isinstance(r, Inventory)])
        rows: list[tuple[Any, ...]] = []
        bodies: list[tuple[int, bytes]] = []
        level_rows: list[tuple[str, str, str, int]] = []
        now = time.time()
        mirror = self._mirror
        for index, record in enumerate(records):
            if record.key in present:
                counts.duplicates += 1
                continue
            present.add(record.key)
            if isinstance(record, Inventory) and record.mode == "absolute":
                place = (record.location, record.sku)
                if place in levels and Decimal(levels[place]) == record.quantity:
                    counts.unchanged += 1  # the level central has (or will have) already
                    continue
                levels[place] = str(record.quantity)
                level_rows.append((record.location, record.sku, str(record.quantity), 0))
            seq = mirror.next_seq
            mirror.next_seq += 1
            mirror.maybe_pending = True
            occurred_at = record.occurred_at.isoformat()
            source = record.source.model_dump_json()
            body = record_json(
                seq,
                record.key,
                record.kind,
                correlation_id,
                occurred_at,
                source,
                texts[index],
            ).encode()
            sealed = _has_contact(record)
            if sealed:
                body = self._sealer.seal(body, record.key)
            if level_rows and level_rows[-1][3] == 0:
                level_rows[-1] = (*level_rows[-1][:3], seq)
            rows.append(
                (
                    seq,
                    record.key,
                    record.kind,
                    _business_date(record),
                    correlation_id,
                    int(sealed),
                    len(body),
                    now,
                )
            )
            bodies.append((seq, body))
            mirror.unacked_rows += 1
            mirror.unacked_bytes += len(body)
        if rows:
            await db.executemany(
                "INSERT INTO records (seq, key, kind, business_date, correlation_id, sealed, size,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            await db.executemany("INSERT INTO bodies VALUES (?, ?)", bodies)
            await db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(mirror.next_seq - 1),)
            )
            counts.inserted += len(rows)
        if level_rows:
            await db.executemany(
                "INSERT INTO levels VALUES (?, ?, ?, ?) ON CONFLICT (location, sku) "
                "DO UPDATE SET quantity = excluded.quantity, seq = excluded.seq",
                level_rows,
            )

    @staticmethod
    async def _present_keys(db: aiosqlite.Connection, keys: list[str]) -> set[str]:
        marks = ",".join("?" * len(keys))
        async with db.execute(f"SELECT key FROM records WHERE key IN ({marks})", keys) as cur:
            return {str(row[0]) for row in await cur.fetchall()}

    @staticmethod
    async def _levels(
        db: aiosqlite.Connection, items: list[Inventory]
    ) -> dict[tuple[str, str], str]:
        wanted = [(i.location, i.sku) for i in items if i.mode == "absolute"]
        if not wanted:
            return {}
        marks = ",".join("(?, ?)" for _ in wanted)
        params = [part for pair in wanted for part in pair]
        async with db.execute(
            f"SELECT location, sku, quantity FROM levels WHERE (location, sku) IN (VALUES {marks})",
            params,
        ) as cur:
            return {(str(r[0]), str(r[1])): str(r[2]) for r in await cur.fetchall()}
