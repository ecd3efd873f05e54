"""The outbox: every record the store produced, durable in SQLite until central has it.

A file's records and its "ingested" mark commit in one transaction; each record gets
the next gap-free `seq`; a key already present is not inserted again. Rows go
pending → sent → acked, and acked rows stay for the audit window before they are
purged. When a budget limit is reached the outbox stops accepting files; it never
drops a record to make room.
"""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import aiosqlite

from agent import _acl
from agent import _failpoints as failpoints
from agent.config import OutboxSettings
from agent.parsers import Parsed, Skipped, bounded
from agent.sources import BudgetReached, IngestFile, IngestOutcome, archive_days
from common.logs import correlation_id as bound_correlation_id
from common.logs import new_correlation_id
from contract import Inventory, Limits, Record, Transaction

from ._db import (
    SCHEMA,
    Recovery,
    check_or_move_aside,
    connect_pragmas,
    last_seq_aside,
    schema_statements,
)
from ._seal import Sealer, load_or_create_key
from ._writer import GroupWriter

__all__ = ["OutRow", "Outbox", "OutboxStats"]

log = logging.getLogger("tillbridge.agent.outbox")

CHUNK = 500  # records parsed, checked and inserted together (SQLite allows 32k parameters)
TRANSACTION_KINDS = ("sale", "return", "void", "cancel")
_KIND_MARKS = ",".join("?" * len(TRANSACTION_KINDS))


class OutRow(NamedTuple):
    """One record as the uplink sends it: `wire` is its JSON inside a batch, built once when
    the record was committed so a backlog drains without re-encoding anything. (A tuple:
    a drain makes a million of them.)"""

    seq: int
    key: str
    kind: str
    wire: bytes
    attempts: int


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    sent: int
    acked: int
    rejected: int
    unacked_bytes: int
    oldest_unacked_seconds: float | None
    last_seq: int
    last_ack_at: datetime | None
    files_ingested: int
    budget: str
    free_disk_bytes: int | None
    recovered: str | None  # a plain sentence when the database was rebuilt after damage


@dataclasses.dataclass(slots=True)
class _Mirror:
    """What the writer keeps in memory beside the database; rolled back with it."""

    next_seq: int = 1
    unacked_rows: int = 0
    unacked_bytes: int = 0
    # No row below this seq is pending: `take` starts its scan here instead of walking past
    # the rows in flight. Whatever puts a row back to pending lowers it.
    pending_from: int = 0
    # False once `take` found nothing more to send and nothing has been added or put back
    # since: an idle agent then asks the database nothing every time it looks.
    maybe_pending: bool = True

    def snapshot(self) -> object:
        return (
            self.next_seq,
            self.unacked_rows,
            self.unacked_bytes,
            self.pending_from,
            self.maybe_pending,
        )

    def restore(self, snapshot: object) -> None:
        (
            self.next_seq,
            self.unacked_rows,
            self.unacked_bytes,
            self.pending_from,
            self.maybe_pending,
        ) = snapshot  # type: ignore[misc]

    def pending_again(self, lowest: int) -> None:
        """Rows from `lowest` on may be pending again."""
        self.pending_from = min(self.pending_from, lowest)
        self.maybe_pending = True


@dataclasses.dataclass(slots=True)
class _FileCounts:
    inserted: int = 0
    duplicates: int = 0
    skipped: int = 0
    unchanged: int = 0


def _next_chunk(items: Iterator[Parsed], n: int) -> list[Parsed]:
    out: list[Parsed] = []
    for item in items:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _runs(seqs: list[int]) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of consecutive numbers in sorted, distinct `seqs`."""
    first = last = seqs[0]
    for seq in seqs[1:]:
        if seq != last + 1:
            yield first, last
            first = seq
        last = seq
    yield first, last


def _has_contact(record: Record) -> bool:
    customer = getattr(record, "customer", None)
    if customer is None:
        return False
    return any((customer.email, customer.phone, customer.first_name, customer.last_name))


def _business_date(record: Record) -> str:
    return record.business_date.isoformat()


class Outbox:
    """The agent's local buffer. Implements the sources' FileSink."""

    def __init__(
        self,
        path: Path,
        settings: OutboxSettings,
        *,
        db: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        sealer: Sealer,
        recovery: Recovery | None,
    ) -> None:
        self.path = path
        self.settings = settings
        self._db = db
        self._reader = reader
        self._sealer = sealer
        self.recovery = recovery
        self.limits = Limits()
        """The relay's limits: a record over them is committed as its refusal instead."""
        self.epoch = ""
        self.first_seq = 1
        self.floor_pending = False
        """True while a rebuilt outbox waits for central's highest seq before numbering."""
        self.created_at: str | None = None
        """The first seq this outbox numbered: lower ones belonged to an outbox rebuilt since."""
        """This outbox's own id: its seqs mean its records only. A rebuilt outbox gets a new
        one, so an acknowledgement of an earlier outbox's batch never settles its rows."""
        self.reread: dict[str, Any] | None = None
        """The re-read mark: set while the archive must still be read again (a new or
        rebuilt outbox), cleared only once that re-read finished."""
        self._mirror = _Mirror()
        self._writer = GroupWriter(db, self._mirror, max_wait_ms=settings.commit_interval_ms)
        self._budget = "ok"
        self._waiting = (0, 0)  # records and bytes a file refused for room needs at least
        self._oldest_unacked: float | None = None
        self._free_disk: int | None = None
        self.last_ack_at: datetime | None = None
        self._recovered_note: str | None = None
        self.on_new_records: Callable[[], None] | None = None
        """Called after a commit that added records (the uplink sends them at once)."""

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        settings: OutboxSettings,
        *,
        key_file: Path,
        archive_dir: Path | None = None,
        limits: Limits | None = None,
    ) -> Outbox:
        """Open (or create) the outbox; a damaged file is moved aside and a new one built.

        A new outbox is created with a re-read mark in the same transaction as its tables:
        whatever stopped the agent before (damage moved aside, a database lost or deleted),
        the archive is read again (from its first day, in `archive_dir`), and every start
        resumes that until it is finished.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        problem = _acl.try_protect(path.parent, folder=True)  # it holds what POS files held
        if problem is not None:
            log.warning(
                "Outbox folder could not be made readable by the agent alone.",
                extra={"path": str(path.parent), "error": problem},
            )
        recovery = await asyncio.to_thread(check_or_move_aside, path)
        sealer = Sealer(load_or_create_key(key_file))
        db = await aiosqlite.connect(path, isolation_level=None)
        for pragma in connect_pragmas():
            await db.execute(pragma)
        # The database and its journal hold records: the agent's account alone reads them
        # (SQLite gives a journal made later the database file's mode).
        for own in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if own.exists():
                _acl.try_protect(own, folder=False)
        async with db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ) as cur:
            row = await cur.fetchone()
        if row is not None and int(row[0]) == 0:
            await cls._create(db, path, recovery, archive_dir)
        else:
            await db.executescript(SCHEMA)  # tables added since the file was made
        reader = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True)
        await reader.execute("PRAGMA busy_timeout=10000")
        outbox = cls(path, settings, db=db, reader=reader, sealer=sealer, recovery=recovery)
        outbox.limits = limits or Limits()
        await outbox._load()
        outbox._writer.start()
        await outbox.refresh_budget()
        return outbox

    @staticmethod
    async def _create(
        db: aiosqlite.Connection, path: Path, recovery: Recovery | None, archive_dir: Path | None
    ) -> None:
        """The tables, the seq to number on from and the re-read mark ("re-read pending,
        from archive day X": the archive's first day, since the damaged file cannot say
        what was acknowledged): one transaction."""
        last_seq = max(
            recovery.last_seq if recovery else 0,
            await asyncio.to_thread(last_seq_aside, path),
        )
        now = datetime.now(UTC)
        if recovery is not None:
            reason = f"damage ({recovery.reason})"
            note: str | None = (
                f"outbox rebuilt at {recovery.at.isoformat(timespec='seconds')} after damage "
                f"({recovery.reason}); the damaged file is kept at {recovery.moved_to}; records "
                "not known to be acknowledged were re-read from the archive"
            )
        else:
            reason = "new outbox"
            note = (
                f"outbox created again at {now.isoformat(timespec='seconds')} after an earlier "
                "one was moved aside; records not known to be acknowledged were re-read from "
                "the archive"
                if last_seq
                else None
            )
        days = await asyncio.to_thread(archive_days, archive_dir) if archive_dir else []
        since = days[0][0].isoformat() if days else None
        mark = json.dumps(
            {"since": since, "reason": reason, "at": now.isoformat(timespec="seconds")}
        )
        rebuilt = recovery is not None or any(path.parent.glob(f"{path.name}.damaged-*"))
        statements = [
            ("INSERT INTO meta VALUES ('last_seq', ?)", (str(last_seq),)),
            ("INSERT INTO meta VALUES ('reread', ?)", (mark,)),
            ("INSERT INTO meta VALUES ('epoch', ?)", (secrets.token_hex(8),)),
            ("INSERT INTO meta VALUES ('first_seq', ?)", (str(last_seq + 1),)),
            ("INSERT INTO meta VALUES ('created_at', ?)", (now.isoformat(timespec="seconds"),)),
        ]
        if note is not None:
            statements.append(("INSERT INTO meta VALUES ('recovered', ?)", (note,)))
        if rebuilt and not last_seq:
            # The damaged file gave no last seq: number nothing until central says its
            # highest, or seqs it holds would name other records.
            statements.append(("INSERT INTO meta VALUES ('floor_pending', ?)", ("1",)))
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in schema_statements():
                await db.execute(statement)
            for sql, params in statements:
                await db.execute(sql, params)
            await db.commit()
        except BaseException:
            await db.rollback()
            raise
        failpoints.hit("outbox.created")

    async def _load(self) -> None:
        db = self._db
        async with db.execute("SELECT name, value FROM meta") as cur:
            meta = {str(r[0]): str(r[1]) for r in await cur.fetchall()}
        self._recovered_note = meta.get("recovered")
        self.reread = json.loads(meta["reread"]) if "reread" in meta else None
        if "epoch" not in meta:  # an outbox made before epochs were kept
            meta["epoch"] = secrets.token_hex(8)
            await db.execute("INSERT INTO meta VALUES ('epoch', ?)", (meta["epoch"],))
            await db.commit()
        self.epoch = meta["epoch"]
        self.first_seq = int(meta.get("first_seq", "1"))
        self.floor_pending = "floor_pending" in meta
        self.created_at = meta.get("created_at")
        meta_last = int(meta.get("last_seq", "0"))
        async with db.execute(
            "SELECT coalesce(max(seq), 0), "
            "coalesce(sum(state != 'acked'), 0), "
            "coalesce(sum(CASE WHEN state != 'acked' THEN size ELSE 0 END), 0) FROM records"
        ) as cur:
            row = await cur.fetchone()
            assert row is not None
        self._mirror.next_seq = max(meta_last, int(row[0])) + 1
        self._mirror.unacked_rows = int(row[1])
        self._mirror.unacked_bytes = int(row[2])
        # A row marked sent before a restart may never have reached central: send it again.
        await db.execute("BEGIN")
        await db.execute(
            "UPDATE records SET state = 'pending' WHERE state != 'acked' AND state = 'sent'"
        )
        await db.commit()

    async def set_floor(self, highest: int) -> bool:
        """Central's highest seq of this store: number on above it. False when no floor
        was awaited (a repeated answer changes nothing)."""
        if not self.floor_pending:
            return False
        mirror = self._mirror

        async def job(db: aiosqlite.Connection) -> None:
            if highest >= mirror.next_seq:
                mirror.next_seq = highest + 1
            first = str(mirror.next_seq)
            await db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(mirror.next_seq - 1),)
            )
            await db.execute("INSERT OR REPLACE INTO meta VALUES ('first_seq', ?)", (first,))
            await db.execute("DELETE FROM meta WHERE name = 'floor_pending'")

        await self._writer.submit(job)
        self.first_seq = self._mirror.next_seq
        self.floor_pending = False
        return True

    async def finish_reread(self) -> None:
        """The archive has been read again whole: clear the mark (durably), and only now."""

        async def job(db: aiosqlite.Connection) -> None:
            await db.execute("DELETE FROM meta WHERE name = 'reread'")

        await self._writer.submit(job)
        self.reread = None
        failpoints.hit("reread.cleared")

    async def close(self) -> None:
        await self._writer.stop()
        await self._reader.close()
        await self._db.close()

    # -- intake (the FileSink side) -------------------------------------------------------

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
            counts = _FileCounts()
            while chunk := await asyncio.to_thread(_next_chunk, items, CHUNK):
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

    def _over_budget(self) -> bool:
        m, s = self._mirror, self.settings
        return m.unacked_rows > s.max_rows or m.unacked_bytes > s.max_bytes

    async def add(self, records: Iterable[Record]) -> IngestOutcome:
        """Commit records that no file brought (end-of-day summaries)."""
        chunk: list[Parsed] = list(records)
        correlation_id = bound_correlation_id() or new_correlation_id()

        async def job(db: aiosqlite.Connection) -> IngestOutcome:
            counts = _FileCounts()
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
        counts: _FileCounts,
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
            body = wire_json(
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

    # -- delivery (the uplink side) -------------------------------------------------------

    async def claim_pending(self, limit: int) -> list[OutRow]:
        """The oldest pending rows, now marked sent (attempts counted)."""
        mirror = self._mirror

        async def select(db: aiosqlite.Connection, start: int) -> list[Any]:
            async with db.execute(
                "SELECT r.seq, r.key, r.kind, b.wire, r.sealed, r.attempts FROM records AS r "
                "JOIN bodies AS b ON b.seq = r.seq "
                "WHERE r.state != 'acked' AND r.state = 'pending' AND r.seq >= ? "
                "ORDER BY r.seq LIMIT ?",
                (start, limit),
            ) as cur:
                return list(await cur.fetchall())

        async def job(db: aiosqlite.Connection) -> list[Any]:
            if not mirror.maybe_pending:
                return []
            rows = await select(db, mirror.pending_from)
            if len(rows) < limit and mirror.pending_from > 0:
                # Short of a full batch: look from the start too, so a row put back to
                # pending is never left behind, whatever the hint says.
                rows = await select(db, 0)
            if len(rows) < limit:
                mirror.maybe_pending = False
            if rows:
                await db.execute(
                    "UPDATE records SET state = 'sent', attempts = attempts + 1, last_attempt = ? "
                    "WHERE state != 'acked' AND state = 'pending' AND seq BETWEEN ? AND ?",
                    (time.time(), rows[0][0], rows[-1][0]),
                )
                mirror.pending_from = rows[-1][0] + 1
            return rows

        if not mirror.maybe_pending:
            return []  # checked again inside the job, in order with the writes
        rows: list[Any] = await self._writer.submit(job, durable=False)
        open_sealed = self._sealer.open
        return [
            OutRow(seq, key, kind, open_sealed(body, key) if sealed else body, attempts + 1)
            for seq, key, kind, body, sealed, attempts in rows
        ]

    async def acknowledge(self, settled: Iterable[int], rejected: dict[int, str]) -> int:
        """Central committed (or kept aside) these seqs: the rows may go. Returns rows changed."""
        seqs = sorted(set(settled) | set(rejected))
        if not seqs:
            return 0
        now = time.time()

        async def job(db: aiosqlite.Connection) -> int:
            sizes: list[int] = []
            for first, last in _runs(seqs):
                # A batch's seqs are mostly one run: a range reads the rows in order.
                async with db.execute(
                    "UPDATE records SET state = 'acked', acked_at = ? "
                    "WHERE seq BETWEEN ? AND ? AND state != 'acked' RETURNING size",
                    (now, first, last),
                ) as cur:
                    sizes.extend(r[0] for r in await cur.fetchall())
            self._mirror.unacked_rows -= len(sizes)
            self._mirror.unacked_bytes -= sum(sizes)
            if rejected:
                await db.executemany(
                    "UPDATE records SET rejected = ? WHERE seq = ?",
                    [(reason, seq) for seq, reason in rejected.items()],
                )
            return len(sizes)

        changed: int = await self._writer.submit(job, durable=False)
        self.last_ack_at = datetime.now(UTC)
        self._check_budget()
        return changed

    async def requeue(self, seqs: Iterable[int] | None = None) -> int:
        """Rows sent but not acknowledged go back to pending (`None`: every sent row)."""
        wanted = sorted(set(seqs)) if seqs is not None else None

        async def job(db: aiosqlite.Connection) -> int:
            self._mirror.pending_again(0 if not wanted else wanted[0])
            if wanted is None:
                cur = await db.execute(
                    "UPDATE records SET state = 'pending' WHERE state != 'acked' AND state = 'sent'"
                )
                return cur.rowcount
            total = 0
            for start in range(0, len(wanted), 5000):
                part = wanted[start : start + 5000]
                marks = ",".join("?" * len(part))
                cur = await db.execute(
                    "UPDATE records SET state = 'pending' "
                    f"WHERE state != 'acked' AND state = 'sent' AND seq IN ({marks})",
                    part,
                )
                total += cur.rowcount
            return total

        result: int = await self._writer.submit(job, durable=False)
        return result

    async def resend(self, from_seq: int, to_seq: int | None) -> tuple[int, int]:
        """Central asks for a range again (it misses it): (rows queued, rows already purged)."""
        upper = to_seq if to_seq is not None else self._mirror.next_seq - 1

        async def job(db: aiosqlite.Connection) -> int:
            self._mirror.pending_again(from_seq)
            await self._count_back(db, "seq BETWEEN ? AND ?", (from_seq, upper))
            async with db.execute(
                "UPDATE records SET state = 'pending', acked_at = NULL "
                "WHERE seq BETWEEN ? AND ? RETURNING seq",
                (from_seq, upper),
            ) as cur:
                return len(list(await cur.fetchall()))

        queued: int = await self._writer.submit(job)
        expected = max(0, upper - from_seq + 1)
        return queued, max(0, expected - queued)

    async def not_held(self, from_seq: int, to_seq: int) -> list[tuple[int, int]]:
        """The ranges of [from_seq, to_seq] this outbox holds no row for (work in the rows
        held, never in the width of the range)."""
        async with self._reader.execute(
            "SELECT seq FROM records WHERE seq BETWEEN ? AND ? ORDER BY seq", (from_seq, to_seq)
        ) as cur:
            held = [int(r[0]) for r in await cur.fetchall()]
        out: list[tuple[int, int]] = []
        expected = from_seq
        for seq in held:
            if seq > expected:
                out.append((expected, seq - 1))
            expected = seq + 1
        if expected <= to_seq:
            out.append((expected, to_seq))
        return out

    async def _count_back(self, db: aiosqlite.Connection, where: str, params: Any) -> None:
        """Acked rows about to be sent again count as unacknowledged once more."""
        async with db.execute(
            f"SELECT count(*), coalesce(sum(size), 0) FROM records "
            f"WHERE state = 'acked' AND {where}",
            params,
        ) as cur:
            row = await cur.fetchone()
        if row is not None:
            self._mirror.unacked_rows += int(row[0])
            self._mirror.unacked_bytes += int(row[1])

    async def replay(self, items: Iterator[Parsed]) -> tuple[int, int]:
        """Send an archived file's records again: rows still held go back to pending, rows
        already purged are inserted anew. Returns (sent again, inserted)."""
        correlation_id = bound_correlation_id() or new_correlation_id()

        async def job(db: aiosqlite.Connection) -> tuple[int, int]:
            again = inserted = 0
            while chunk := await asyncio.to_thread(_next_chunk, items, CHUNK):
                records = [r for r in chunk if not isinstance(r, Skipped)]
                keys = [r.key for r in records]
                marks = ",".join("?" * len(keys))
                held = await self._present_keys(db, keys) if keys else set()
                if held:
                    self._mirror.pending_again(0)
                    await self._count_back(db, f"key IN ({marks})", keys)
                    cur = await db.execute(
                        f"UPDATE records SET state = 'pending', acked_at = NULL "
                        f"WHERE key IN ({marks})",
                        keys,
                    )
                    again += cur.rowcount
                counts = _FileCounts()
                fresh: list[Parsed] = [r for r in records if r.key not in held]
                await self._insert(db, fresh, correlation_id, counts)
                inserted += counts.inserted
            return again, inserted

        result: tuple[int, int] = await self._writer.submit(job)
        self._committed(result[0] + result[1])
        return result

    async def purge(self, now: float | None = None) -> int:
        """Delete acknowledged rows older than the audit window."""
        cutoff = (now if now is not None else time.time()) - self.settings.keep_acked_days * 86400

        async def job(db: aiosqlite.Connection) -> int:
            await db.execute(
                "DELETE FROM bodies WHERE seq IN "
                "(SELECT seq FROM records WHERE state = 'acked' AND acked_at < ?)",
                (cutoff,),
            )
            cur = await db.execute(
                "DELETE FROM records WHERE state = 'acked' AND acked_at < ?", (cutoff,)
            )
            return cur.rowcount

        purged: int = await self._writer.submit(job, durable=False)
        if purged:
            log.info("Acknowledged records purged.", extra={"rows": purged})
        return purged

    # -- end of day -----------------------------------------------------------------------

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
            await self._insert(db, list(records), correlation_id, _FileCounts())
            await db.execute(
                "INSERT OR REPLACE INTO days VALUES (?, ?, ?, ?)",
                (business_date, revision, time.time(), covered),
            )

        await self._writer.submit(job)
        self._committed(len(records))

    def _committed(self, inserted: int) -> None:
        self._check_budget()
        if inserted and self.on_new_records is not None:
            self.on_new_records()

    # -- budget and status ----------------------------------------------------------------

    def accepting(self) -> bool:
        """False while a budget limit is reached: the watcher leaves files in the POS folder."""
        return self._budget == "ok"

    @property
    def budget(self) -> str:
        return self._budget

    def _check_budget(self) -> None:
        s = self.settings
        m = self._mirror
        problem = None
        rows, size = self._waiting
        if m.unacked_rows and (
            (rows and m.unacked_rows + rows > s.max_rows)
            or (size and m.unacked_bytes + size > s.max_bytes)
        ):
            problem = f"blocked: buffer full (a file of {rows}+ records waits for room)"
        elif m.unacked_rows >= s.max_rows:
            problem = f"blocked: buffer full ({m.unacked_rows} unacknowledged records)"
        elif m.unacked_bytes >= s.max_bytes:
            problem = f"blocked: buffer full ({m.unacked_bytes} bytes unacknowledged)"
        elif (
            self._oldest_unacked is not None
            and time.time() - self._oldest_unacked >= s.max_age_days * 86400
        ):
            problem = "blocked: buffer full (oldest unacknowledged record is too old)"
        elif self._free_disk is not None and self._free_disk < s.min_free_disk_mb * 1024 * 1024:
            problem = f"blocked: disk low ({self._free_disk // (1024 * 1024)} MB free)"
        state = problem or "ok"
        if state.split(" (")[0] != self._budget.split(" (")[0]:  # log a change of state only
            if problem:
                log.warning(
                    "Intake paused: the outbox budget is reached. Files wait in the POS folder.",
                    extra={"budget": state},
                )
            else:
                log.info("Intake resumed: the outbox is below its budget.")
        self._budget = state

    def archive_needed_from(self, zone: tzinfo) -> date | None:
        """The first archive day the outbox may still need, or None when it needs none: a
        pending re-read needs every day from its mark's `since` (all of them without one),
        and the day before the oldest record central has not acknowledged is kept too
        (should this outbox be damaged, a re-read would read it)."""
        needed: list[date] = []
        if self.reread is not None:
            since = self.reread.get("since")
            needed.append(date.fromisoformat(since) if since else date.min)
        if self._oldest_unacked is not None:
            oldest = datetime.fromtimestamp(self._oldest_unacked, zone).date()
            needed.append(oldest - timedelta(days=1))
        return min(needed) if needed else None

    async def refresh_budget(self) -> str:
        """Re-read age and free disk (counts are kept exact in memory), then re-check."""
        async with self._reader.execute(
            "SELECT min(created_at) FROM records WHERE state != 'acked'"
        ) as cur:
            row = await cur.fetchone()
        self._oldest_unacked = float(row[0]) if row and row[0] is not None else None
        try:
            self._free_disk = shutil.disk_usage(self.path.parent).free
        except OSError:
            self._free_disk = None
        self._check_budget()
        return self._budget

    async def stats(self) -> OutboxStats:
        async with self._reader.execute(
            "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'sent'), 0), "
            "coalesce(sum(state = 'acked'), 0), coalesce(sum(rejected IS NOT NULL), 0), "
            "min(CASE WHEN state != 'acked' THEN created_at END) FROM records"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        async with self._reader.execute("SELECT count(*) FROM files") as cur:
            files = await cur.fetchone()
        oldest = float(row[4]) if row[4] is not None else None
        self._oldest_unacked = oldest
        return OutboxStats(
            pending=int(row[0]),
            sent=int(row[1]),
            acked=int(row[2]),
            rejected=int(row[3]),
            unacked_bytes=self._mirror.unacked_bytes,
            oldest_unacked_seconds=(time.time() - oldest) if oldest is not None else None,
            last_seq=self._mirror.next_seq - 1,
            last_ack_at=self.last_ack_at,
            files_ingested=int(files[0]) if files else 0,
            budget=self._budget,
            free_disk_bytes=self._free_disk,
            recovered=self._recovered_note,
        )

    @property
    def unacked_rows(self) -> int:
        return self._mirror.unacked_rows

    @property
    def unacked_bytes(self) -> int:
        return self._mirror.unacked_bytes

    @property
    def last_seq(self) -> int:
        return self._mirror.next_seq - 1


def wire_json(
    seq: int,
    key: str,
    kind: str,
    correlation_id: str,
    occurred_at: str,
    source: str,
    body: str,
) -> str:
    """A record as it appears inside a batch (the contract's WireRecord), from JSON parts."""
    return (
        f'{{"kind":{json.dumps(kind)},"seq":{seq},"key":{json.dumps(key)},'
        f'"correlation_id":{json.dumps(correlation_id)},'
        f'"occurred_at":{json.dumps(occurred_at)},"source":{source},"body":{body}}}'
    )
