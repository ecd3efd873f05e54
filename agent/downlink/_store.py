"""The downlink's own SQLite file (`downlink.db` beside the outbox): every message
central sent this store, committed before it is acknowledged, and whether and where it
was written to the POS.

A file of its own, not a table in the outbox: the outbox may be moved aside and rebuilt
from the archive after damage, and orders are not in the archive. One connection, WAL
and a full fsync per commit: a message acknowledged to central survives a power cut.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from agent import _failpoints as failpoints
from contract import DownMessage, OnlineOrder, OrderCancel

__all__ = ["DownRow", "DownSummary", "DownlinkStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per message central sent; seq is central's downlink seq for this store.
CREATE TABLE IF NOT EXISTS downlink (
    seq          INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    key          TEXT NOT NULL,
    order_ref    TEXT NOT NULL,   -- target:order_id: a cancellation waits for its order
    order_number TEXT NOT NULL,
    issued_at    TEXT NOT NULL,
    body         TEXT NOT NULL,   -- the message body as central sent it (JSON)
    received_at  REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error   TEXT,
    written_at   REAL,            -- set once the POS has it: never written again
    written_as   TEXT             -- the file name or check ref
);
CREATE INDEX IF NOT EXISTS downlink_unwritten ON downlink (seq) WHERE written_at IS NULL;
"""


@dataclasses.dataclass(frozen=True, slots=True)
class DownRow:
    """A message not yet written to the POS."""

    seq: int
    kind: str
    key: str
    order_ref: str
    order_number: str
    issued_at: str
    body: str
    received_at: float
    attempts: int
    next_attempt: float
    last_error: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class DownSummary:
    received: int
    written: int
    waiting: int
    oldest_waiting_seconds: float | None
    through: int
    alert_count: int
    alerts: list[dict[str, Any]]
    """The first 50 of them, oldest first."""


def purged_key(key: str) -> str:
    """What a purged customer's message key becomes: a resend of it is still recognised,
    but the customer's id is no longer readable in the file."""
    return "purged:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _order_of(message: DownMessage) -> tuple[str, str]:
    try:
        body = message.read()
    except ValidationError:
        return f"unreadable:{message.seq}", "?"
    if not isinstance(body, OnlineOrder | OrderCancel):
        return f"{body.kind}:{message.key}", "-"  # reference data: no order
    return f"{body.target}:{body.order_id}", body.order_number


class DownlinkStore:
    """Open with `DownlinkStore.open(path)`; every method runs on one worker thread."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.Lock()
        self.through = int(self._meta("through") or 0)

    @classmethod
    async def open(cls, path: Path) -> DownlinkStore:
        def connect() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            for pragma in (
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=FULL",
                "PRAGMA busy_timeout=10000",
                # Freed content is overwritten: a dropped body (a customer's contact) does
                # not linger in free pages of the file.
                "PRAGMA secure_delete=ON",
            ):
                conn.execute(pragma)
            conn.executescript(_SCHEMA)
            return conn

        return cls(path, await asyncio.to_thread(connect))

    async def close(self) -> None:
        await self._run(self._conn.close)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    def _meta(self, name: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    # -- taking messages ------------------------------------------------------------------

    async def commit(
        self, messages: Sequence[DownMessage], now: float | None = None
    ) -> tuple[list[int], list[int], int]:
        """Commit the messages not held yet, in one transaction. Returns the seqs of the
        batch the store now holds (new or held before), the seqs it refuses because it
        holds another message under them, and `through`, the highest seq below which it
        holds every message. Only then may the caller acknowledge."""
        held, clashes, through = await self._run(self._commit, messages, now or time.time())
        failpoints.hit("downlink.committed")
        return held, clashes, through

    def _commit(
        self, messages: Sequence[DownMessage], now: float
    ) -> tuple[list[int], list[int], int]:
        conn = self._conn
        held: list[int] = []
        clashes: list[int] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for message in messages:
                row = conn.execute(
                    "SELECT key FROM downlink WHERE seq = ?", (message.seq,)
                ).fetchone()
                if row is not None:
                    # Held already (a resend) - unless central now numbers another message
                    # with it (its queue was rebuilt): then it is not this store's to settle.
                    same = row[0] in (message.key, purged_key(message.key))
                    (held if same else clashes).append(message.seq)
                    continue
                ref, number = _order_of(message)
                conn.execute(
                    "INSERT INTO downlink (seq, kind, key, order_ref, order_number,"
                    " issued_at, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        message.seq,
                        message.kind,
                        message.key,
                        ref,
                        number,
                        message.issued_at.isoformat(),
                        json.dumps(message.body, separators=(",", ":")),
                        now,
                    ),
                )
                held.append(message.seq)
            through = self.through
            for (seq,) in conn.execute(
                "SELECT seq FROM downlink WHERE seq > ? ORDER BY seq", (through,)
            ):
                if seq != through + 1:
                    break
                through = seq
            conn.execute(
                "INSERT INTO meta VALUES ('through', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(through),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.through = through
        return held, clashes, through

    # -- the writer loop ------------------------------------------------------------------

    async def unwritten(self) -> list[DownRow]:
        return await self._run(self._unwritten)

    def _unwritten(self) -> list[DownRow]:
        rows = self._conn.execute(
            "SELECT seq, kind, key, order_ref, order_number, issued_at, body, received_at,"
            " attempts,"
            " next_attempt, last_error FROM downlink WHERE written_at IS NULL ORDER BY seq"
        ).fetchall()
        return [DownRow(*row) for row in rows]

    async def mark_written(self, seq: int, written_as: str, now: float | None = None) -> None:
        await self._run(
            self._write_sql,
            "UPDATE downlink SET written_at = ?, written_as = ?, last_error = NULL,"
            " attempts = attempts + 1 WHERE seq = ?",
            (now or time.time(), written_as, seq),
        )

    async def mark_failed(self, seq: int, error: str, next_attempt: float) -> None:
        await self._run(
            self._write_sql,
            "UPDATE downlink SET attempts = attempts + 1, last_error = ?, next_attempt = ?"
            " WHERE seq = ?",
            (error[:1000], next_attempt, seq),
        )

    async def settle_reference(
        self, written: dict[int, str], now: float | None = None, *, purged: Sequence[str] = ()
    ) -> None:
        """Mark reference messages written (where each went) and drop their bodies at once:
        their state lives on in `reference.db` (contact sealed), so a customer's contact
        is not kept in the clear here. For each `purged` entity the keys of its messages
        are replaced by a hash (`purged_key`), and the write-ahead log, which still holds
        the bodies as they came in, is emptied."""

        def settle(at: float) -> None:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "UPDATE downlink SET written_at = ?, written_as = ?, last_error = NULL,"
                    " attempts = attempts + 1, body = '' WHERE seq = ?",
                    [(at, where, seq) for seq, where in written.items()],
                )
                for entity in purged:
                    for kind in ("customer", "customer_purge"):
                        prefix = f"{kind}:{entity}:"
                        rows = conn.execute(
                            "SELECT seq, key FROM downlink WHERE substr(key, 1, ?) = ?",
                            (len(prefix), prefix),
                        ).fetchall()
                        conn.executemany(
                            "UPDATE downlink SET key = ?, order_ref = ? WHERE seq = ?",
                            [(purged_key(k), purged_key(k), seq) for seq, k in rows],
                        )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if purged:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        await self._run(settle, now or time.time())

    async def mark_failed_many(self, seqs: Sequence[int], error: str, next_attempt: float) -> None:
        """`mark_failed` for many messages in one commit."""

        def mark() -> None:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "UPDATE downlink SET attempts = attempts + 1, last_error = ?,"
                    " next_attempt = ? WHERE seq = ?",
                    [(error[:1000], next_attempt, seq) for seq in seqs],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._run(mark)

    def _write_sql(self, sql: str, params: tuple[Any, ...]) -> None:
        self._conn.execute(sql, params)

    async def written_as(self, order_ref: str) -> str | None:
        """Where the latest written order with this ref went (for its cancellation)."""

        def query() -> str | None:
            row = self._conn.execute(
                "SELECT written_as FROM downlink WHERE order_ref = ? AND kind = 'order'"
                " AND written_at IS NOT NULL ORDER BY seq DESC LIMIT 1",
                (order_ref,),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(query)

    async def purge(self, before: float) -> int:
        """Drop the bodies of messages written before `before`; the row (seq, key, where it
        went) stays, small, so a resend of it years on is still known and not written."""

        def empty() -> int:
            cur = self._conn.execute(
                "UPDATE downlink SET body = '' WHERE written_at IS NOT NULL AND written_at < ?"
                " AND body != ''",
                (before,),
            )
            return cur.rowcount

        return await self._run(empty)

    async def summary(self, alert_after: float, now: float | None = None) -> DownSummary:
        return await self._run(summarise, self._conn, alert_after, now or time.time())


def summarise(conn: sqlite3.Connection, alert_after: float, now: float) -> DownSummary:
    """What status shows; also used on a closed file when the agent is not running."""
    received, written = conn.execute("SELECT count(*), count(written_at) FROM downlink").fetchone()
    waiting = conn.execute(
        "SELECT seq, kind, order_number, received_at, attempts, last_error FROM downlink"
        " WHERE written_at IS NULL ORDER BY seq"
    ).fetchall()
    through_row = conn.execute("SELECT value FROM meta WHERE name = 'through'").fetchone()
    alerts = [
        {
            "seq": seq,
            "kind": kind,
            "order_number": number,
            "waiting_seconds": round(now - received_at),
            "attempts": attempts,
            "last_error": error,
        }
        for seq, kind, number, received_at, attempts, error in waiting
        if now - received_at >= alert_after
    ]
    return DownSummary(
        received=int(received),
        written=int(written),
        waiting=len(waiting),
        oldest_waiting_seconds=round(now - waiting[0][3], 1) if waiting else None,
        through=int(through_row[0]) if through_row else 0,
        alert_count=len(alerts),
        alerts=alerts[:50],
    )
