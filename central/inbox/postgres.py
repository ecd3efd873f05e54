"""The PostgreSQL inbox: several relays on one database.

Each relay keeps a small pool of connections. Batches of one store are serialised
by locking the store's row; claims use `FOR UPDATE SKIP LOCKED`, so two relays never
take the same record. Deadlocks and serialisation failures are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncRawCursor, errors
from psycopg.types.json import Jsonb
from pydantic_core import to_json

from ._inbox_sql import InboxSql
from ._sql import Conn

__all__ = ["PostgresInbox", "open_postgres"]

T = TypeVar("T")
_RETRIES = 5
# Any constant: the advisory lock that keeps two relays from migrating at once.
_MIGRATION_LOCK = 7_146_120_501


@functools.lru_cache(maxsize=1024)
def _pg(sql: str) -> str:
    """`?` placeholders as PostgreSQL's own `$1, $2, …`, once per statement. The raw
    cursor then sends the query as it is: psycopg would otherwise parse its `%s`
    placeholders on every call of a statement with more than 50 parameters (a batch's
    INSERT), which cost the relay more CPU than the rest of the insert."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))


class _PgConn:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with AsyncRawCursor(self._conn) as cursor:
            await cursor.execute(_pg(sql), tuple(params))
            if cursor.description is None:
                return []
            return [tuple(row) for row in await cursor.fetchall()]

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        async with AsyncRawCursor(self._conn) as cursor:
            await cursor.execute(_pg(sql), tuple(params) if params else None)

    async def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            async with AsyncRawCursor(self._conn) as cursor:
                await cursor.executemany(_pg(sql), [tuple(r) for r in rows])


class PostgresInbox(InboxSql):
    dialect = "postgres"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    json_text = "body->>'{field}'"

    def __init__(self, url: str, *, relay_id: str = "", pool_size: int = 5) -> None:
        super().__init__(relay_id)
        self._url = url
        self._size = pool_size
        self._idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        self._all: list[psycopg.AsyncConnection[Any]] = []
        # A connection found broken means the server went away: every connection opened
        # before then is suspect and is opened again before its next use.
        self._generation = 0
        self._born: dict[int, int] = {}

    async def _open(self) -> None:
        for _ in range(self._size):
            conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            self._all.append(conn)
            self._born[id(conn)] = self._generation
            self._idle.put_nowait(conn)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await self._idle.get()
        try:
            if conn.closed or conn.broken or self._born.get(id(conn)) != self._generation:
                # The server went away (restarted, crashed): connect again. Should that fail
                # too, the dead connection goes back to the pool and the next caller tries
                # again, so the pool heals once the server is back.
                old = conn
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                with contextlib.suppress(ValueError):
                    self._all.remove(old)
                self._born.pop(id(old), None)
                with contextlib.suppress(Exception):
                    await old.close()
                self._all.append(conn)
                self._born[id(conn)] = self._generation
            yield conn
        finally:
            if conn.broken and self._born.get(id(conn)) == self._generation:
                self._generation += 1
            self._idle.put_nowait(conn)

    async def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        for attempt in range(_RETRIES):
            try:
                async with self._connection() as conn, conn.transaction():
                    return await fn(_PgConn(conn))
            except (errors.DeadlockDetected, errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _migrate_locked(self, c: Conn) -> None:
        await c.run("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        await self._migrate(c)

    def _ts(self, value: datetime) -> Any:
        return value

    def _json(self, value: dict[str, Any]) -> Any:
        # pydantic's serialiser writes a body in half the time of the json module's.
        return Jsonb(value, dumps=to_json)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
        self._all.clear()


async def open_postgres(url: str, *, relay_id: str = "", pool_size: int = 5) -> PostgresInbox:
    """Connect a pool to the database and bring its schema up to date."""
    inbox = PostgresInbox(url, relay_id=relay_id, pool_size=pool_size)
    try:
        await inbox._open()
        await inbox._run(inbox._migrate_locked)
    except BaseException:
        await inbox.close()
        raise
    return inbox
