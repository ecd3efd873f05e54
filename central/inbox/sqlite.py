"""The SQLite inbox: one file in WAL mode, one writer at a time.

Each transaction starts with BEGIN IMMEDIATE, so a second connection (another
process on the same file) waits for the write lock instead of failing midway;
that is what makes `claim` atomic between connections.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from common.modes import private_dir, private_file

from ._inbox_sql import InboxSql
from ._sql import Conn

__all__ = ["SqliteInbox", "open_sqlite"]

T = TypeVar("T")


class _SqliteConn:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # One trip to the database thread, not three (execute, fetch, close).
        rows = await self._db.execute_fetchall(sql, tuple(params))
        return [tuple(row) for row in rows]

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._db.execute(sql, tuple(params))

    async def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._db.executemany(sql, [tuple(r) for r in rows])


class SqliteInbox(InboxSql):
    dialect = "sqlite"

    def __init__(self, db: aiosqlite.Connection, relay_id: str = "") -> None:
        super().__init__(relay_id)
        self._db = db
        self._conn = _SqliteConn(db)
        self._lock = asyncio.Lock()

    async def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                result = await fn(self._conn)
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")
            return result

    def _ts(self, value: datetime) -> Any:
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def _json(self, value: dict[str, Any]) -> Any:
        return json.dumps(value, separators=(",", ":"), default=str)

    async def close(self) -> None:
        await self._db.close()


async def open_sqlite(path: Path, *, relay_id: str = "") -> SqliteInbox:
    """Open (creating if needed) the inbox file and bring its schema up to date. The file
    holds customer contact: it and its journal files are the owner's only (0600), and a
    folder made for it is 0700."""
    if not path.parent.exists():
        private_dir(path.parent)
    for part in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
        if part == path or part.exists():
            private_file(part)  # SQLite gives its journal files the database's mode
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA busy_timeout = 30000")
        await db.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed batch survives power loss, because its ack follows the commit.
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("PRAGMA foreign_keys = ON")
        inbox = SqliteInbox(db, relay_id)
        await inbox._run(inbox._migrate)
    except BaseException:
        await db.close()
        raise
    return inbox
