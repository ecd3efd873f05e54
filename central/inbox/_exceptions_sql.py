"""The exception queue in the inbox: what needs a person, listed, retried or resolved,
each step in the audit trail."""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._audit_sql import AuditSql
from ._model import (
    ExceptionItem,
    RecordState,
    utcnow,
)
from ._sql import Conn

__all__ = ["ExceptionsSql"]

_EXCEPTION_COLUMNS = (
    "e.id, e.store, e.seq, e.key, e.record_id, e.reason, e.payload, e.created_at, e.target, "
    "e.status, e.response, e.attempts, e.resolved_at, e.resolution, e.resolved_by, r.kind"
)


class ExceptionsSql(AuditSql):
    """The exception queue role of the inbox."""

    def _exception(self, r: Sequence[Any]) -> ExceptionItem:
        return ExceptionItem(
            id=r[0],
            store=r[1],
            seq=r[2],
            key=r[3],
            record_id=r[4],
            reason=r[5],
            payload=self._obj(r[6]) if r[6] is not None else None,
            created_at=self._dt(r[7]),
            target=r[8],
            status=r[9],
            response=self._obj(r[10]) if r[10] is not None else None,
            attempts=r[11] or 0,
            resolved_at=self._dt(r[12]) if r[12] is not None else None,
            resolution=r[13],
            resolved_by=r[14],
            kind=r[15],
        )

    async def exceptions(
        self,
        limit: int = 100,
        *,
        include_closed: bool = False,
        store: str | None = None,
        target: str | None = None,
    ) -> list[ExceptionItem]:
        where = ["1 = 1" if include_closed else "e.resolved_at IS NULL"]
        params: list[Any] = []
        if store is not None:
            where.append("e.store = ?")
            params.append(store)
        if target is not None:
            where.append("e.target = ?")
            params.append(target)

        async def body(c: Conn) -> list[ExceptionItem]:
            rows = await c.fetch(
                f"SELECT {_EXCEPTION_COLUMNS} FROM exceptions e "
                "LEFT JOIN records r ON r.id = e.record_id "
                f"WHERE {' AND '.join(where)} ORDER BY e.id LIMIT ?",
                (*params, limit),
            )
            return [self._exception(r) for r in rows]

        return await self._run(body)

    async def exception(self, exception_id: int) -> ExceptionItem | None:
        async def body(c: Conn) -> ExceptionItem | None:
            rows = await c.fetch(
                f"SELECT {_EXCEPTION_COLUMNS} FROM exceptions e "
                "LEFT JOIN records r ON r.id = e.record_id WHERE e.id = ?",
                (exception_id,),
            )
            return self._exception(rows[0]) if rows else None

        return await self._run(body)

    async def _open_one(self, c: Conn, exception_id: int) -> tuple[int | None, str | None]:
        """The record and target of an open exception, locked; ValueError otherwise."""
        rows = await c.fetch(
            "SELECT record_id, target, resolved_at FROM exceptions WHERE id = ?" + self.for_update,
            (exception_id,),
        )
        if not rows:
            raise ValueError(f"no exception {exception_id}")
        record_id, target, closed = rows[0]
        if closed is not None:
            raise ValueError(f"exception {exception_id} is already closed")
        return record_id, target

    async def retry_exception(
        self, exception_id: int, *, by: str, now: datetime | None = None
    ) -> str:
        """Send the record through again; returns what was done, or raises ValueError."""
        at = self._ts(now or utcnow())

        async def body(c: Conn) -> str:
            record_id, target = await self._open_one(c, exception_id)
            if record_id is None:
                raise ValueError(
                    f"exception {exception_id} is a record refused at intake; "
                    "the store must send it again corrected"
                )
            await self._lock_records(c, [record_id])
            await c.run(
                "UPDATE exceptions SET resolved_at = ?, resolution = 'retried', resolved_by = ? "
                "WHERE id = ?",
                (at, by, exception_id),
            )
            if target is not None:
                await c.run(
                    "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, "
                    "claimed_by = NULL, lease_until = NULL, updated_at = ? "
                    "WHERE record_id = ? AND target = ? AND state = 'exception'",
                    (at, at, record_id, target),
                )
                await self._audit(c, record_id, target, "retried", at, None, {"by": by})
                await self._summarise(c, [record_id], at)
                return f"record {record_id} queued again for {target}"
            link = await c.fetch(
                "SELECT o.state FROM records r LEFT JOIN records o ON o.key = r.link_key "
                "WHERE r.id = ? AND r.link_key IS NOT NULL",
                (record_id,),
            )
            waits = bool(link) and link[0][0] != RecordState.POSTED.value
            state = RecordState.PARKED if waits else RecordState.RECEIVED
            await c.run(
                "UPDATE records SET state = ?, attempts = 0, next_attempt_at = NULL, "
                "updated_at = ?, claimed_by = NULL, lease_until = NULL WHERE id = ?",
                (state.value, at, record_id),
            )
            await self._history(c, [(record_id, state.value, f"retried by {by}")], at, by)
            await self._audit(c, record_id, None, "retried", at, None, {"by": by})
            return f"record {record_id} " + (
                "waits again for its original" if waits else "goes through routing again"
            )

        return await self._run(body)

    async def resolve_exception(
        self, exception_id: int, note: str, *, by: str, now: datetime | None = None
    ) -> None:
        """Close an exception with a person's note; the record is not sent again."""
        if not note.strip():
            raise ValueError("a resolution needs a note saying what was done")
        at = self._ts(now or utcnow())

        async def body(c: Conn) -> None:
            record_id, target = await self._open_one(c, exception_id)
            if record_id is not None:
                await self._lock_records(c, [record_id])
            await c.run(
                "UPDATE exceptions SET resolved_at = ?, resolution = ?, resolved_by = ? "
                "WHERE id = ?",
                (at, note.strip(), by, exception_id),
            )
            if record_id is None:
                return
            await self._audit(c, record_id, target, "resolved", at, None, {"by": by, "note": note})
            if target is not None:
                await c.run(
                    "UPDATE deliveries SET state = 'resolved', updated_at = ? "
                    "WHERE record_id = ? AND target = ? AND state = 'exception'",
                    (at, record_id, target),
                )
            still_open = await c.fetch(
                "SELECT 1 FROM exceptions WHERE record_id = ? AND resolved_at IS NULL LIMIT 1",
                (record_id,),
            )
            if still_open:
                return
            pending = await c.fetch(
                "SELECT 1 FROM deliveries WHERE record_id = ? "
                "AND state IN ('pending', 'retrying') LIMIT 1",
                (record_id,),
            )
            if pending:
                await self._summarise(c, [record_id], at)
            else:
                await self._set_state(c, [record_id], RecordState.RESOLVED, at, note.strip())

        await self._run(body)
