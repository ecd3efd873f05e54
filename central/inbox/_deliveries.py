"""Delivery in the inbox: one row per record and target with its own retry state, routed
and claimed by the delivery workers, finished with each target's answer.
"""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from ._audit_sql import AuditSql
from ._model import (
    DeliveryItem,
    DeliveryState,
    DeliveryUpdate,
    RecordState,
    RouteDecision,
    utcnow,
)
from ._sql import Conn, _chunks, _marks

__all__ = ["FIXED_BY", "DeliveriesSql"]

_DUE = (DeliveryState.PENDING.value, DeliveryState.RETRYING.value)
CLAIM_DUE = (
    "SELECT d.record_id, d.subject, d.seq FROM deliveries d WHERE d.target = ? "
    # The states are written out, not bound: the partial index `deliveries_queue` (schema
    # 6) serves the claim only where the planner sees they are the index's own.
    f"AND d.state IN ({', '.join(repr(s) for s in _DUE)}) AND d.next_attempt_at <= ? "
    "AND (d.lease_until IS NULL OR d.lease_until < ?) "
    "ORDER BY d.seq, d.record_id LIMIT ?"
)
"""The due deliveries of a target, oldest seq first (the claim adds its row locking)."""
# Kinds of a POS transaction that was read: the partners of a `refused` record.
_READABLE = ("sale", "return", "void", "cancel")
FIXED_BY = "tillbridge"
"""Who closes the exception of a refused transaction the store has since read."""


class DeliveriesSql(AuditSql):
    """The delivery role of the inbox."""

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
        time, lowest seq first, and never while another claim on it is live or an earlier
        update of it still waits for a retry: a movement never overtakes the count before
        it (which it would then supersede).
        """
        moment = now or utcnow()
        at, until = self._ts(moment), self._ts(moment + lease)

        async def body(c: Conn) -> list[DeliveryItem]:
            rows = await c.fetch(CLAIM_DUE + self.skip_locked, (target, at, at, n * 4))
            chosen: list[int] = []
            subjects: set[str] = set()
            for record_id, subject, seq in rows:
                if subject is not None:
                    if subject in subjects or await self._subject_busy(c, target, subject, at, seq):
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
                "d.attempts - 1, d.route, d.subject, r.link_key, d.ref FROM deliveries d "
                "JOIN records r ON r.id = d.record_id "
                f"WHERE d.target = ? AND d.record_id IN ({_marks(len(chosen))}) ORDER BY d.seq",
                (target, *chosen),
            )
            items = []
            for row in found:
                rid, key, store, seq, kind, cid, rbody, attempts, route, subject, link, ref = row
                original = level = None
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
                    # What the target holds now, as far as the relay confirmed it: a
                    # connector that writes a movement as a level adds to this.
                    last = await c.fetch(
                        "SELECT ref FROM deliveries WHERE target = ? AND subject = ? "
                        "AND state = 'posted' AND record_id <> ? "
                        "ORDER BY posted_at DESC, seq DESC LIMIT 1",
                        (target, subject, rid),
                    )
                    level = last[0][0] if last else None
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
                        ref=ref,
                        level_ref=level,
                    )
                )
            return items

        return await self._run(body)

    async def _subject_busy(self, c: Conn, target: str, subject: str, at: Any, seq: int) -> bool:
        """Another update of the subject is claimed, or an earlier one is still to go."""
        rows = await c.fetch(
            "SELECT 1 FROM deliveries WHERE target = ? AND subject = ? "
            "AND (lease_until >= ? OR seq < ?) "
            f"AND state IN ({_marks(len(_DUE))}) LIMIT 1",
            (target, subject, at, seq, *_DUE),
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
            await self._lock_records(c, [u.record_id for u in updates])
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

    async def delivery_stats(self) -> dict[str, dict[str, int]]:
        async def body(c: Conn) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for target, state, count in await c.fetch(
                "SELECT target, state, COUNT(*) FROM deliveries GROUP BY target, state"
            ):
                out.setdefault(target, {s.value: 0 for s in DeliveryState})[state] = int(count)
            return out

        return await self._run(body)


_STEP: dict[str, tuple[DeliveryState, str]] = {
    "posted": (DeliveryState.POSTED, "posted"),
    "retry": (DeliveryState.RETRYING, "retry"),
    "deferred": (DeliveryState.PENDING, "deferred"),
    "exception": (DeliveryState.EXCEPTION, "exception"),
    "superseded": (DeliveryState.SUPERSEDED, "superseded"),
}
