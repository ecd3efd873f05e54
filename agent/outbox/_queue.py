"""The send-queue role of the outbox (the uplink's side): rows go pending → sent →
acked, are sent again on request or after a reconnect, re-read from the archive when
central lacks them, and purged after the audit window."""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

import aiosqlite

from agent.parsers import Parsed, Skipped
from common.logs import correlation_id as bound_correlation_id
from common.logs import new_correlation_id

from ._intake import CHUNK, FileCounts, Intake, next_chunk

__all__ = ["OutRow", "SendQueue"]

log = logging.getLogger("tillbridge.agent.outbox")


class OutRow(NamedTuple):
    """One record as the uplink sends it: `wire` is its JSON inside a batch, built once when
    the record was committed so a backlog drains without re-encoding anything. (A tuple:
    a drain makes a million of them.)"""

    seq: int
    key: str
    kind: str
    wire: bytes
    attempts: int


def _runs(seqs: list[int]) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of consecutive numbers in sorted, distinct `seqs`."""
    first = last = seqs[0]
    for seq in seqs[1:]:
        if seq != last + 1:
            yield first, last
            first = seq
        last = seq
    yield first, last


class SendQueue(Intake):
    """The outbox's send queue: what the uplink sends and central acknowledges."""

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
            while chunk := await asyncio.to_thread(next_chunk, items, CHUNK):
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
                counts = FileCounts()
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
