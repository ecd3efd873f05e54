"""The outbox: every record the store produced, durable in SQLite until central has it.
This module opens, creates and closes it; its roles live beside it: intake
(`_intake`), the send queue (`_queue`), end of day (`_days`) and the budget
(`_budget`).

A file's records and its "ingested" mark commit in one transaction; each record gets
the next gap-free `seq`; a key already present is not inserted again. Rows go
pending → sent → acked, and acked rows stay for the audit window before they are
purged. When a budget limit is reached the outbox stops accepting files; it never
drops a record to make room.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from agent import _acl
from agent import _failpoints as failpoints
from agent._seal import Sealer, load_or_create_key
from agent.config import OutboxSettings
from agent.sources import archive_days
from contract import Limits

from ._budget import OutboxStats
from ._days import Days
from ._db import (
    SCHEMA,
    Recovery,
    check_or_move_aside,
    connect_pragmas,
    last_seq_aside,
    schema_statements,
)
from ._queue import OutRow, SendQueue
from ._state import Mirror
from ._writer import GroupWriter

__all__ = ["OutRow", "Outbox", "OutboxStats"]

log = logging.getLogger("tillbridge.agent.outbox")


class Outbox(SendQueue, Days):
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
        self._mirror = Mirror()
        self._writer = GroupWriter(db, self._mirror, max_wait_ms=settings.commit_interval_ms)
        self._budget = "ok"
        self._waiting = (0, 0)  # records and bytes a file refused for room needs at least
        self._oldest_unacked: float | None = None
        self._free_disk: int | None = None
        self.last_ack_at: datetime | None = None
        self._recovered_note: str | None = None
        self.on_new_records: Callable[[], None] | None = None
        """Called after a commit that added records (the uplink sends them at once)."""

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
