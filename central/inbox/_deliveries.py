"""Delivery on top of the inbox: one row per record and target with its own retry state,
the audit trail of every step, and the exception queue a person works through.

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
    DeliveryItem,
    DeliveryState,
    DeliveryUpdate,
    ExceptionItem,
    RecordState,
    RouteDecision,
    utcnow,
)
from ._sql import Conn, SqlInbox, _chunks, _marks

__all__ = ["DeliverySql"]

_EXCEPTION_COLUMNS = (
    "e.id, e.store, e.seq, e.key, e.record_id, e.reason, e.payload, e.created_at, e.target, "
    "e.status, e.response, e.attempts, e.resolved_at, e.resolution, e.resolved_by, r.kind"
)
_DUE = (DeliveryState.PENDING.value, DeliveryState.RETRYING.value)
# Kinds of a POS transaction that was read: the partners of a `refused` record.
_READABLE = ("sale", "return", "void", "cancel")
FIXED_BY = "tillbridge"
"""Who closes the exception of a refused transaction the store has since read."""


class DeliverySql(SqlInbox):
    """The delivery half of the inbox; backends extend this."""

    # -- routing --------------------------------------------------------------------------

    async def route_records(
        self, decisions: Sequence[RouteDecision], *, now: datetime | None = None
    ) -> None:
        """Record what routing decided, in one transaction, and release the claims."""
        at = self._ts(now or utcnow())

        failed = [d for d in decisions if d.error is not None]
        done = [d for d in decisions if d.error is None and not d.routes]
        routed = [d for d in decisions if d.error is None and d.routes]

        async def body(c: Conn) -> None:
            for d in failed:  # rare: one at a time, each with its exception
                reason = d.error or "unroutable"
                await self._set_state(c, [d.record_id], RecordState.EXCEPTION, at, reason)
                await self._open_exception(c, d.record_id, None, reason, None, None, 0, at)
                await self._audit(c, d.record_id, None, "unroutable", at, None, {"reason": reason})
            for part in _chunks(done):
                ids = [d.record_id for d in part]
                await self._set_state(c, ids, RecordState.POSTED, at, "no target takes this kind")
                await self._audits(c, [(i, "routed", {"targets": []}) for i in ids], at)
            for part in _chunks(routed):
                ids = [d.record_id for d in part]
                seqs = dict(
                    await c.fetch(
                        f"SELECT id, seq FROM records WHERE id IN ({_marks(len(ids))})", ids
                    )
                )
                await c.run_many(
                    "INSERT INTO deliveries (record_id, target, state, next_attempt_at, route, "
                    "seq, subject, created_at, updated_at) "
                    "VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (record_id, target) DO NOTHING",
                    [
                        (d.record_id, t, at, self._json(r), seqs[d.record_id], d.subject, at, at)
                        for d in part
                        for t, r in sorted(d.routes.items())
                    ],
                )
                await self._set_state(c, ids, RecordState.ROUTED, at, None)
                await self._audits(c, [(d.record_id, "routed", d.snapshot) for d in part], at)

        await self._run(body)

    async def settle_refused(
        self, records: Sequence[tuple[int, str, str]], *, now: datetime | None = None
    ) -> list[tuple[int, str]]:
        """Close the exception of each refused transaction the store has since read.

        `refused:S:R:D:T` and `sale:S:R:D:T` (or return, void, cancel) are the same POS
        transaction: once the readable one is in the inbox, in whichever order the two
        arrived, the refused one's open exceptions are resolved with a note naming it and
        the refused record is marked resolved. `records` are (id, kind, key) of records
        just routed; returns (refused record id, readable key) for each one settled.
        """
        partners: dict[str, tuple[int, str, str]] = {}
        for record in records:
            _record_id, kind, key = record
            _head, sep, tail = key.partition(":")
            if not sep:
                continue
            if kind == "refused":
                for readable in _READABLE:
                    partners[f"{readable}:{tail}"] = record
            elif kind in _READABLE:
                partners[f"refused:{tail}"] = record
        if not partners:
            return []
        at = self._ts(now or utcnow())

        async def body(c: Conn) -> list[tuple[int, str]]:
            pairs: dict[int, str] = {}  # refused record id -> the readable key
            for part in _chunks(list(partners)):
                found = await c.fetch(
                    f"SELECT id, kind, key FROM records WHERE key IN ({_marks(len(part))})", part
                )
                for record_id, kind, key in found:
                    batch_id, _batch_kind, batch_key = partners[key]
                    if kind == "refused":
                        pairs[int(record_id)] = batch_key
                    else:
                        pairs[batch_id] = str(key)
            settled = []
            for refused_id, readable in sorted(pairs.items()):
                open_rows = await c.fetch(
                    "SELECT id FROM exceptions WHERE record_id = ? AND resolved_at IS NULL",
                    (refused_id,),
                )
                if not open_rows:
                    continue
                note = f"read again by the store as {readable}"
                await c.run(
                    "UPDATE exceptions SET resolved_at = ?, resolution = ?, resolved_by = ? "
                    "WHERE record_id = ? AND resolved_at IS NULL",
                    (at, note, FIXED_BY, refused_id),
                )
                await self._audit(c, refused_id, None, "fixed", at, None, {"key": readable})
                await self._set_state(c, [refused_id], RecordState.RESOLVED, at, note)
                settled.append((refused_id, readable))
            return settled

        return await self._run(body)

    # -- delivery -------------------------------------------------------------------------

    async def claim_deliveries(
        self,
        target: str,
        n: int,
        relay_id: str,
        lease: timedelta,
        *,
        now: datetime | None = None,
    ) -> list[DeliveryItem]:
        """Up to `n` due deliveries for `target`, oldest seq first.

        Inventory of one subject (store, location, SKU) is handed out one update at a
        time, lowest seq first, and never while another claim on it is live.
        """
        moment = now or utcnow()
        at, until = self._ts(moment), self._ts(moment + lease)

        async def body(c: Conn) -> list[DeliveryItem]:
            rows = await c.fetch(
                "SELECT d.record_id, d.subject FROM deliveries d WHERE d.target = ? "
                f"AND d.state IN ({_marks(len(_DUE))}) AND d.next_attempt_at <= ? "
                "AND (d.lease_until IS NULL OR d.lease_until < ?) "
                f"ORDER BY d.seq, d.record_id LIMIT ?{self.skip_locked}",
                (target, *_DUE, at, at, n * 4),
            )
            chosen: list[int] = []
            subjects: set[str] = set()
            for record_id, subject in rows:
                if subject is not None:
                    if subject in subjects or await self._subject_busy(c, target, subject, at):
                        continue
                    subjects.add(subject)
                chosen.append(record_id)
                if len(chosen) == n:
                    break
            if not chosen:
                return []
            # The attempt counts from the claim: if this relay dies mid-call, whoever takes
            # the record over knows the target may already have applied it.
            await c.run(
                "UPDATE deliveries SET claimed_by = ?, lease_until = ?, attempts = attempts + 1 "
                f"WHERE target = ? AND record_id IN ({_marks(len(chosen))})",
                (relay_id, until, target, *chosen),
            )
            found = await c.fetch(
                "SELECT d.record_id, r.key, r.store, r.seq, r.kind, r.correlation_id, r.body, "
                "d.attempts - 1, d.route, d.subject, r.link_key FROM deliveries d "
                "JOIN records r ON r.id = d.record_id "
                f"WHERE d.target = ? AND d.record_id IN ({_marks(len(chosen))}) ORDER BY d.seq",
                (target, *chosen),
            )
            items = []
            for rid, key, store, seq, kind, cid, rbody, attempts, route, subject, link in found:
                original = None
                if link is not None:
                    refs = await c.fetch(
                        "SELECT d.ref FROM deliveries d JOIN records r ON r.id = d.record_id "
                        "WHERE r.key = ? AND d.target = ? AND d.state = 'posted'",
                        (link, target),
                    )
                    original = refs[0][0] if refs else None
                superseded = False
                body = self._obj(rbody)
                if subject is not None and body.get("mode") == "delta":
                    # A movement is folded into a later count, never into a later movement:
                    # only a newer level posted makes it moot.
                    newer = await c.fetch(
                        "SELECT r.body FROM deliveries d JOIN records r ON r.id = d.record_id "
                        "WHERE d.target = ? AND d.subject = ? AND d.seq > ? "
                        "AND d.state = 'posted'",
                        (target, subject, seq),
                    )
                    superseded = any(self._obj(b).get("mode") != "delta" for (b,) in newer)
                elif subject is not None:
                    newer = await c.fetch(
                        "SELECT 1 FROM deliveries WHERE target = ? AND subject = ? AND seq > ? "
                        "AND state = 'posted' LIMIT 1",
                        (target, subject, seq),
                    )
                    superseded = bool(newer)
                items.append(
                    DeliveryItem(
                        record_id=rid,
                        target=target,
                        key=key,
                        store=store,
                        seq=seq,
                        kind=kind,
                        correlation_id=cid,
                        body=body,
                        attempts=attempts,
                        route=self._obj(route),
                        subject=subject,
                        original_ref=original,
                        superseded=superseded,
                    )
                )
            return items

        return await self._run(body)

    async def _subject_busy(self, c: Conn, target: str, subject: str, at: Any) -> bool:
        rows = await c.fetch(
            "SELECT 1 FROM deliveries WHERE target = ? AND subject = ? AND lease_until >= ? "
            f"AND state IN ({_marks(len(_DUE))}) LIMIT 1",
            (target, subject, at, *_DUE),
        )
        return bool(rows)

    async def finish_deliveries(
        self,
        target: str,
        updates: Sequence[DeliveryUpdate],
        *,
        relay_id: str,
        now: datetime | None = None,
    ) -> None:
        """Record each verdict, its audit entries and exceptions, and the records' states."""
        at = self._ts(now or utcnow())

        async def body(c: Conn) -> None:
            for u in updates:
                rows = await c.fetch(
                    "SELECT attempts FROM deliveries WHERE record_id = ? AND target = ? "
                    "AND (claimed_by = ? OR claimed_by IS NULL OR lease_until < ?)"
                    + self.for_update,
                    (u.record_id, target, relay_id, at),
                )
                if not rows:
                    continue  # another relay took it over after our lease ran out
                attempts = rows[0][0] - (0 if u.count_attempt else 1)
                state, step = _STEP[u.verdict]
                retry = self._ts(u.retry_at) if u.retry_at is not None else at
                await c.run(
                    "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?, "
                    "claimed_by = NULL, lease_until = NULL, ref = COALESCE(?, ref), "
                    "confirmed = COALESCE(?, confirmed), "
                    "last_status = ?, last_error = ?, updated_at = ?, "
                    "posted_at = CASE WHEN ? = 'posted' THEN ? ELSE posted_at END "
                    "WHERE record_id = ? AND target = ?",
                    (
                        state.value,
                        attempts,
                        retry,
                        u.ref,
                        u.confirmed,
                        u.status,
                        u.reason or None,
                        at,
                        state.value,
                        at,
                        u.record_id,
                        target,
                    ),
                )
                if u.exchanges:
                    detail = {"exchanges": u.exchanges, "dry_run": u.dry_run}
                    await self._audit(c, u.record_id, target, "attempt", at, u.status, detail)
                outcome: dict[str, Any] = {"reason": u.reason} if u.reason else {}
                if u.ref:
                    outcome["ref"] = u.ref
                if u.retry_at is not None and state is DeliveryState.RETRYING:
                    outcome["retry_at"] = u.retry_at.isoformat()
                if u.dry_run:
                    outcome["dry_run"] = True
                await self._audit(c, u.record_id, target, step, at, u.status, outcome)
                if state is DeliveryState.EXCEPTION:
                    response = {"exchanges": u.exchanges[-3:]} if u.exchanges else None
                    await self._open_exception(
                        c, u.record_id, target, u.reason, u.status, response, attempts, at
                    )
            await self._summarise(c, sorted({u.record_id for u in updates}), at)

        await self._run(body)

    async def _summarise(self, c: Conn, record_ids: Sequence[int], at: Any) -> None:
        """Bring each record's own state in line with its deliveries."""
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

    # -- the exception queue --------------------------------------------------------------

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

    # -- the audit trail ------------------------------------------------------------------

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

    async def deliveries_of(self, record_id: int) -> list[dict[str, Any]]:
        async def body(c: Conn) -> list[dict[str, Any]]:
            rows = await c.fetch(
                "SELECT target, state, attempts, ref, last_status, last_error, posted_at, "
                "next_attempt_at FROM deliveries WHERE record_id = ? ORDER BY target",
                (record_id,),
            )
            return [
                {
                    "target": t,
                    "state": s,
                    "attempts": a,
                    "ref": ref,
                    "last_status": st,
                    "last_error": err,
                    "posted_at": self._dt(p).isoformat() if p is not None else None,
                    "next_attempt_at": self._dt(n).isoformat() if n is not None else None,
                }
                for t, s, a, ref, st, err, p, n in rows
            ]

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

    async def delivery_stats(self) -> dict[str, dict[str, int]]:
        async def body(c: Conn) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for target, state, count in await c.fetch(
                "SELECT target, state, COUNT(*) FROM deliveries GROUP BY target, state"
            ):
                out.setdefault(target, {s.value: 0 for s in DeliveryState})[state] = int(count)
            return out

        return await self._run(body)

    async def stats(self) -> dict[str, Any]:
        base = await super().stats()
        base["deliveries"] = await self.delivery_stats()
        return base


_STEP: dict[str, tuple[DeliveryState, str]] = {
    "posted": (DeliveryState.POSTED, "posted"),
    "retry": (DeliveryState.RETRYING, "retry"),
    "deferred": (DeliveryState.PENDING, "deferred"),
    "exception": (DeliveryState.EXCEPTION, "exception"),
    "superseded": (DeliveryState.SUPERSEDED, "superseded"),
}
