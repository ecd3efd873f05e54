"""The reference role of the inbox over SQL (see `_reference`): one row per entity, kept
only when newer; digests of what each store was queued; resyncs claimed once by an
insert-or-compare; the store cross-reference replaced row by row."""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._model import utcnow
from ._reference import XREF_COLUMNS, ReferenceRow, StoreXref
from ._sql import Conn, SqlInbox, _marks

__all__ = ["ReferenceSql"]

_XREF = ", ".join(XREF_COLUMNS)


class ReferenceSql(SqlInbox):
    """The reference role of the inbox."""

    async def put_reference(
        self,
        entity: str,
        kind: str,
        source: str,
        version: str,
        body: str,
        changed_at: datetime,
        *,
        now: datetime | None = None,
    ) -> bool:
        at = self._ts(now or utcnow())
        changed = self._ts(changed_at)

        async def work(c: Conn) -> bool:
            # An older or the same version read again (a page re-read after a lost race,
            # a feed rewound) leaves the newer state in place.
            kept = await c.fetch(
                "INSERT INTO reference_entities "
                "(entity, kind, source, version, body, changed_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entity) DO UPDATE SET "
                "kind = excluded.kind, source = excluded.source, version = excluded.version, "
                "body = excluded.body, changed_at = excluded.changed_at, "
                "updated_at = excluded.updated_at "
                "WHERE reference_entities.version <> excluded.version "
                "AND reference_entities.changed_at <= excluded.changed_at RETURNING entity",
                (entity, kind, source, version, body, changed, at),
            )
            if kept:
                return True
            held = await c.fetch(
                "SELECT version FROM reference_entities WHERE entity = ?", (entity,)
            )
            return bool(held) and held[0][0] == version

        return await self._run(work)

    async def drop_reference(self, entity: str) -> bool:
        async def work(c: Conn) -> bool:
            await c.run("DELETE FROM reference_sent WHERE entity = ?", (entity,))
            gone = await c.fetch(
                "DELETE FROM reference_entities WHERE entity = ? RETURNING entity", (entity,)
            )
            return bool(gone)

        return await self._run(work)

    async def reference_rows(self, kind: str | None = None) -> list[ReferenceRow]:
        where, params = ("WHERE kind = ?", (kind,)) if kind else ("", ())

        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT entity, kind, source, version, body, changed_at, updated_at "
                f"FROM reference_entities {where} ORDER BY entity",
                params,
            )

        return [
            ReferenceRow(r[0], r[1], r[2], r[3], r[4], self._dt(r[5]), self._dt(r[6]))
            for r in await self._run(work)
        ]

    async def reference_counts(self) -> dict[str, int]:
        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT kind, COUNT(*) FROM reference_entities GROUP BY kind ORDER BY kind"
            )

        return {kind: int(n) for kind, n in await self._run(work)}

    async def sent_digest(self, store: str, entity: str) -> str | None:
        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT digest FROM reference_sent WHERE store = ? AND entity = ?",
                (store, entity),
            )

        rows = await self._run(work)
        return str(rows[0][0]) if rows else None

    async def sent_digests(self, entity: str) -> dict[str, str]:
        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT store, digest FROM reference_sent WHERE entity = ?", (entity,)
            )

        return {str(store): str(digest) for store, digest in await self._run(work)}

    async def note_sent(
        self, store: str, entity: str, digest: str, *, now: datetime | None = None
    ) -> None:
        at = self._ts(now or utcnow())

        async def work(c: Conn) -> None:
            await c.run(
                "INSERT INTO reference_sent (store, entity, digest, queued_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (store, entity) DO UPDATE SET "
                "digest = excluded.digest, queued_at = excluded.queued_at",
                (store, entity, digest, at),
            )

        await self._run(work)

    async def resync_answered(self, store: str, scope: str, requested_at: str) -> bool:
        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT 1 FROM reference_resyncs WHERE store = ? AND scope = ? "
                "AND requested_at = ?",
                (store, scope, requested_at),
            )

        return bool(await self._run(work))

    async def claim_resync(
        self, store: str, scope: str, requested_at: str, *, now: datetime | None = None
    ) -> bool:
        at = self._ts(now or utcnow())

        async def work(c: Conn) -> bool:
            claimed = await c.fetch(
                "INSERT INTO reference_resyncs (store, scope, requested_at, answered_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (store, scope) DO UPDATE SET "
                "requested_at = excluded.requested_at, answered_at = excluded.answered_at "
                "WHERE reference_resyncs.requested_at <> excluded.requested_at RETURNING store",
                (store, scope, requested_at, at),
            )
            return bool(claimed)

        return await self._run(work)

    async def put_xref(self, rows: Sequence[StoreXref], *, now: datetime | None = None) -> int:
        at = self._ts(now or utcnow())
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*XREF_COLUMNS[1:], "updated_at"))

        async def work(c: Conn) -> None:
            await c.run_many(
                f"INSERT INTO store_xref ({_XREF}, updated_at) "
                f"VALUES ({_marks(len(XREF_COLUMNS) + 1)}) "
                f"ON CONFLICT (store) DO UPDATE SET {updates}",
                [(*(getattr(r, col) for col in XREF_COLUMNS), at) for r in rows],
            )

        await self._run(work)
        return len(rows)

    async def store_xref(self) -> list[StoreXref]:
        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(f"SELECT {_XREF} FROM store_xref ORDER BY store")

        return [StoreXref(*r) for r in await self._run(work)]

    async def known_stores(self) -> list[str]:
        async def work(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT store FROM stores UNION SELECT store FROM store_xref ORDER BY 1"
            )

        return [str(r[0]) for r in await self._run(work)]
