"""What every role of the inbox writes the same way: a record's state summarised from its
deliveries, the audit trail of every step (and its purge), and opening an exception.

A record's own state summarises its deliveries: routed while any is pending, retrying
while any waits for a retry, exception while any needs a person, posted when all are.
"""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from ._model import (
    AuditEntry,
    DeliveryState,
    RecordState,
    utcnow,
)
from ._sql import Conn, SqlInbox, _chunks, _marks

__all__ = ["AuditSql"]


class AuditSql(SqlInbox):
    """The audit trail and the writes the delivery and exception roles share."""

    async def _lock_records(self, c: Conn, record_ids: Sequence[int]) -> None:
        """Lock these records, in id order, before anything else in the transaction
        touches them. Two targets finishing the same record at once would otherwise each
        read the other's delivery as not yet posted (neither had committed) and leave the
        record routed for good; and an audit row's foreign key takes a share lock on its
        record, so locking later, after writing audit rows, would deadlock two such
        transactions. No-op where one writer holds the whole database (SQLite)."""
        if not self.for_update:
            return
        for part in _chunks(sorted(set(record_ids))):
            await c.fetch(
                f"SELECT id FROM records WHERE id IN ({_marks(len(part))}) ORDER BY id"
                + self.for_update,
                part,
            )

    async def _summarise(self, c: Conn, record_ids: Sequence[int], at: Any) -> None:
        """Bring each record's own state in line with its deliveries. The caller has
        locked the records (`_lock_records`) at the start of its transaction."""
        for part in _chunks(record_ids):
            rows = await c.fetch(
                "SELECT r.id, r.state, d.state FROM records r JOIN deliveries d "
                f"ON d.record_id = r.id WHERE r.id IN ({_marks(len(part))})",
                part,
            )
            states: dict[int, tuple[str, set[str]]] = {}
            for rid, rstate, dstate in rows:
                states.setdefault(rid, (rstate, set()))[1].add(dstate)
            for rid, (current, ds) in states.items():
                if ds & {DeliveryState.EXCEPTION.value}:
                    wanted = RecordState.EXCEPTION
                elif ds <= {"posted", "superseded", "resolved"}:
                    wanted = RecordState.POSTED
                elif DeliveryState.RETRYING.value in ds:
                    wanted = RecordState.RETRYING
                else:
                    wanted = RecordState.ROUTED
                if wanted.value != current:
                    await self._set_state(c, [rid], wanted, at, None)

    async def _set_state(
        self, c: Conn, ids: Sequence[int], state: RecordState, at: Any, detail: str | None
    ) -> None:
        await c.run(
            f"UPDATE records SET state = ?, updated_at = ?, claimed_by = NULL, lease_until = NULL "
            f"WHERE id IN ({_marks(len(ids))})",
            (state.value, at, *ids),
        )
        await self._history(c, [(i, state.value, detail) for i in ids], at, self.relay_id)
        if state is RecordState.POSTED:
            keys = await c.fetch(f"SELECT key FROM records WHERE id IN ({_marks(len(ids))})", ids)
            await self._release(c, [k for (k,) in keys], at, self.relay_id)

    async def _audits(
        self, c: Conn, rows: Sequence[tuple[int, str, dict[str, Any] | None]], at: Any
    ) -> None:
        """Record-level audit steps (no target), many at once."""
        await c.run_many(
            "INSERT INTO audit (record_id, target, step, at, detail, relay_id) "
            "VALUES (?, NULL, ?, ?, ?, ?)",
            [
                (rid, step, at, self._json(detail) if detail is not None else None, self.relay_id)
                for rid, step, detail in rows
            ],
        )

    async def _audit(
        self,
        c: Conn,
        record_id: int,
        target: str | None,
        step: str,
        at: Any,
        status: int | None,
        detail: dict[str, Any] | None,
    ) -> None:
        await c.run(
            "INSERT INTO audit (record_id, target, step, at, status, detail, relay_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record_id,
                target,
                step,
                at,
                status,
                self._json(detail) if detail is not None else None,
                self.relay_id,
            ),
        )

    async def _open_exception(
        self,
        c: Conn,
        record_id: int,
        target: str | None,
        reason: str,
        status: int | None,
        response: dict[str, Any] | None,
        attempts: int,
        at: Any,
    ) -> None:
        ((store, seq, key),) = await c.fetch(
            "SELECT store, seq, key FROM records WHERE id = ?", (record_id,)
        )
        await c.run(
            "INSERT INTO exceptions (store, seq, key, record_id, reason, created_at, target, "
            "status, response, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                store,
                seq,
                key,
                record_id,
                reason or "exception",
                at,
                target,
                status,
                self._json(response) if response is not None else None,
                attempts,
            ),
        )

    async def audit_trail(self, record_id: int) -> list[AuditEntry]:
        """Every step of one record: its states and each target's attempts, in time order
        (at one instant, a target's steps come before the record state they led to)."""

        async def body(c: Conn) -> list[AuditEntry]:
            states = await c.fetch(
                "SELECT at, state, detail, relay_id, id FROM record_states WHERE record_id = ?",
                (record_id,),
            )
            steps = await c.fetch(
                "SELECT at, step, target, status, detail, relay_id, id FROM audit "
                "WHERE record_id = ?",
                (record_id,),
            )
            out = [
                (self._dt(at), 1, i, AuditEntry(self._dt(at), state, None, None, detail, relay))
                for at, state, detail, relay, i in states
            ]
            out += [
                (
                    self._dt(at),
                    0,
                    i,
                    AuditEntry(
                        self._dt(at),
                        step,
                        target,
                        status,
                        self._obj(detail) if detail is not None else None,
                        relay,
                    ),
                )
                for at, step, target, status, detail, relay, i in steps
            ]
            return [entry for *_, entry in sorted(out, key=lambda e: e[:3])]

        return await self._run(body)

    async def purge_audit(self, older_than: timedelta, *, now: datetime | None = None) -> int:
        """Drop audit entries past the retention of records that are finished."""
        cutoff = self._ts((now or utcnow()) - older_than)

        async def body(c: Conn) -> int:
            rows = await c.fetch(
                "DELETE FROM audit WHERE at < ? AND record_id IN (SELECT id FROM records "
                "WHERE state IN ('posted', 'resolved') AND updated_at < ?) RETURNING id",
                (cutoff, cutoff),
            )
            return len(rows)

        return await self._run(body)
