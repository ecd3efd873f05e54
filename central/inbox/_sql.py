"""The inbox logic both backends share: one SQL dialect (`?` placeholders, ON CONFLICT,
RETURNING) over a tiny connection seam that each backend provides with its own
transactions, timestamp and JSON types, and row locking.
"""

# ruff: noqa: S608  (SQL here is joined from constant fragments and `?` marks; values are bound)
from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, Protocol, TypeVar

from contract import Heartbeat, Release

from ._model import (
    ALLOWED_FROM,
    CLAIMABLE,
    ClaimedRecord,
    Gap,
    IncomingRecord,
    InsertResult,
    InvalidRecord,
    RecordState,
    Released,
    StoreStatus,
    utcnow,
)

__all__ = ["Conn", "SqlInbox", "migrations"]

log = logging.getLogger("tillbridge.central.inbox")

T = TypeVar("T")
_CHUNK = 200
_PARKED_DETAIL = "original not posted yet"
_RECORD_COLUMNS = (
    "key, store, seq, kind, correlation_id, occurred_at, link_key, batch_id, body, state, "
    "received_at, updated_at"
)
_CLAIMED_COLUMNS = "id, key, store, seq, kind, state, attempts, correlation_id, body"


class Conn(Protocol):
    """One connection inside one transaction."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    async def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


def migrations(dialect: str) -> list[tuple[int, str, list[str]]]:
    """(version, name, statements) of every shipped migration for `dialect`, in order."""
    found = []
    for entry in resources.files("central.inbox").iterdir():
        name = entry.name
        if not (name.startswith(f"{dialect}_") and name.endswith(".sql")):
            continue
        version = int(name.removeprefix(f"{dialect}_").split("_", 1)[0])
        text = entry.read_text(encoding="utf-8")
        statements = [s.strip() for s in text.split(";") if _has_sql(s)]
        found.append((version, name, statements))
    return sorted(found)


def _has_sql(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged [from, to] ranges covering `seqs` (adjacent seqs join one range)."""
    return merge_ranges((s, s) for s in seqs)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with overlapping and adjacent ones joined."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def holes(after: int, ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges missing between `after` and the end of the last of `ranges` (sorted,
    merged, all above `after`): work in the number of ranges, never in their width."""
    out: list[tuple[int, int]] = []
    edge = after
    for lo, hi in ranges:
        if lo > edge + 1:
            out.append((edge + 1, lo - 1))
        edge = max(edge, hi)
    return out


class SqlInbox:
    """Inbox over SQL; subclasses provide `_run`, `_ts`, `_json` and the locking clauses."""

    dialect = ""
    for_update = ""
    skip_locked = ""

    def __init__(self, relay_id: str = "") -> None:
        self.relay_id = relay_id

    # -- the seam -------------------------------------------------------------------------

    async def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn` in one write transaction, retrying it on transient conflicts."""
        raise NotImplementedError

    def _ts(self, value: datetime) -> Any:
        raise NotImplementedError

    def _json(self, value: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _dt(value: Any) -> datetime:
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    @staticmethod
    def _obj(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    async def _migrate(self, c: Conn) -> None:
        await c.run(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied = {v for (v,) in await c.fetch("SELECT version FROM schema_migrations")}
        for version, name, statements in migrations(self.dialect):
            if version in applied:
                continue
            for statement in statements:
                await c.run(statement)
            await c.run(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, utcnow().isoformat()),
            )

    # -- intake ---------------------------------------------------------------------------

    async def insert_batch(
        self,
        store: str,
        records: Sequence[IncomingRecord],
        *,
        rejected: Sequence[InvalidRecord] = (),
        refused_seqs: Sequence[int] = (),
        released: Sequence[Release] = (),
        batch_id: str = "",
        agent: tuple[str, str] | None = None,
        now: datetime | None = None,
    ) -> InsertResult:
        at = self._ts(now or utcnow())

        async def body(c: Conn) -> InsertResult:
            # The store row serialises batches of one store across relays: the upsert
            # locks it as FOR UPDATE would, in the same round trip that reads it.
            ((contiguous, max_seq),) = await c.fetch(
                "INSERT INTO stores (store, first_seen, last_seen) VALUES (?, ?, ?) "
                "ON CONFLICT (store) DO UPDATE SET last_seen = stores.last_seen "
                "RETURNING contiguous_seq, max_seq",
                (store, at, at),
            )
            # The watermark, gaps and releases depend on the batch's seqs, not on which of
            # its records turn out new: settled first, so that on PostgreSQL the store's
            # row is brought up to date in the statement that inserts the records.
            seqs = {r.seq for r in records} | {r.seq for r in rejected} | set(refused_seqs)
            closed = await self._close_released(
                c, store, contiguous, max_seq, released, batch_id, at
            )
            contiguous, max_seq = await self._advance(
                c, store, contiguous, max_seq, seqs, at, closed
            )
            for bad in rejected:
                await c.run(
                    "INSERT INTO exceptions (store, seq, key, reason, payload, dedupe, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe) DO NOTHING",
                    (
                        store,
                        bad.seq,
                        bad.key,
                        bad.reason,
                        self._json(bad.payload),
                        f"invalid:{store}:{bad.seq}:{bad.key}",
                        at,
                    ),
                )
            links = sorted({r.link_key for r in records if r.link_key})
            posted: set[str] = set()
            for link_part in _chunks(links):
                rows = await c.fetch(
                    "SELECT key FROM records WHERE state = 'posted' "
                    f"AND key IN ({_marks(len(link_part))})",
                    link_part,
                )
                posted.update(k for (k,) in rows)
            first_by_key: dict[str, IncomingRecord] = {}
            for rec in records:
                first_by_key.setdefault(rec.key, rec)
            fresh = sorted(first_by_key.values(), key=lambda r: r.key)
            agent_set = ", agent_id = ?, agent_version = ?" if agent is not None else ""
            agent_values = list(agent) if agent is not None else []
            # One INSERT for the whole batch, and seqs that name one record each: then the
            # records the INSERT returns say how many were new and how many repeats.
            folded = (
                self.dialect == "postgres"
                and 0 < len(fresh) <= _CHUNK
                and len({r.seq for r in records}) == len(records)
            )
            new_keys: set[str] = set()
            history: list[tuple[Any, ...]] = []
            for part in _chunks(fresh):
                params: list[Any] = []
                for rec in part:
                    parked = rec.link_key is not None and rec.link_key not in posted
                    state = RecordState.PARKED if parked else RecordState.RECEIVED
                    params += [
                        rec.key,
                        store,
                        rec.seq,
                        rec.kind,
                        rec.correlation_id,
                        self._ts(rec.occurred_at),
                        rec.link_key,
                        batch_id,
                        self._json(rec.body),
                        state.value,
                        at,
                        at,
                    ]
                values = ", ".join(["(" + _marks(12) + ")"] * len(part))
                insert = (
                    f"INSERT INTO records ({_RECORD_COLUMNS}) VALUES {values} "
                    "ON CONFLICT (key) DO NOTHING RETURNING id, key, state"
                )
                if self.dialect == "postgres":
                    # The state history (and the store's row, when folded) in the same
                    # statement: one round trip, not three.
                    counted, counted_values = "", []
                    if folded:
                        counted = (
                            ", counted AS (UPDATE stores SET contiguous_seq = ?, max_seq = ?, "
                            "records = records + (SELECT count(*) FROM fresh), "
                            "duplicates = duplicates + ? - (SELECT count(*) FROM fresh), "
                            f"last_seen = ?{agent_set} WHERE store = ?)"
                        )
                        counted_values = [
                            contiguous,
                            max_seq,
                            len(records),
                            at,
                            *agent_values,
                            store,
                        ]
                    rows = await c.fetch(
                        f"WITH fresh AS ({insert}), history AS ("
                        "INSERT INTO record_states (record_id, state, at, relay_id, detail) "
                        "SELECT id, state, ?, CAST(? AS TEXT), CASE WHEN state = ? "
                        f"THEN '{_PARKED_DETAIL}' END FROM fresh){counted} "
                        "SELECT id, key, state FROM fresh",
                        [*params, at, self.relay_id, RecordState.PARKED.value, *counted_values],
                    )
                    new_keys.update(key for _, key, _ in rows)
                    continue
                rows = await c.fetch(insert, params)
                for rid, key, state in rows:
                    new_keys.add(key)
                    detail = _PARKED_DETAIL if state == RecordState.PARKED else None
                    history.append((rid, state, at, self.relay_id, detail))
            if history:
                await c.run_many(
                    "INSERT INTO record_states (record_id, state, at, relay_id, detail) "
                    "VALUES (?, ?, ?, ?, ?)",
                    history,
                )
            committed = sorted(first_by_key[k].seq for k in new_keys)
            committed_set = set(committed)
            duplicates = sorted(r.seq for r in records if r.seq not in committed_set)
            if not folded:
                assignments = "contiguous_seq = ?, max_seq = ?, records = records + ?, "
                assignments += f"duplicates = duplicates + ?, last_seen = ?{agent_set}"
                update = [contiguous, max_seq, len(committed), len(duplicates), at, *agent_values]
                await c.run(f"UPDATE stores SET {assignments} WHERE store = ?", [*update, store])
            return InsertResult(committed, duplicates)

        return await self._run(body)

    async def _close_released(
        self,
        c: Conn,
        store: str,
        contiguous: int,
        max_seq: int,
        released: Sequence[Release],
        batch_id: str,
        at: Any,
    ) -> list[tuple[int, int]]:
        """Keep each released range as the store's audit, a `purged` one as an exception
        too; returns the ranges that close gaps (only seqs central misses: above the
        watermark, not beyond the highest seq it has seen)."""
        closed: list[tuple[int, int]] = []
        for item in released:
            lo, hi = max(item.from_seq, contiguous + 1), min(item.to_seq, max_seq)
            if lo > hi:
                continue
            rows = await c.fetch(
                "INSERT INTO releases (store, from_seq, to_seq, cause, reason, batch_id, "
                "received_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (store, from_seq, to_seq, cause) DO NOTHING RETURNING id",
                (store, lo, hi, item.cause, item.reason, batch_id, at),
            )
            if item.cause == "purged":
                await c.run(
                    "INSERT INTO exceptions (store, seq, key, reason, payload, dedupe, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe) DO NOTHING",
                    (
                        store,
                        lo,
                        None,
                        f"seqs {lo}-{hi} never arrived and the store no longer holds them "
                        f"({item.reason}): look for missing records",
                        None,
                        f"released:{store}:{lo}:{hi}",
                        at,
                    ),
                )
            if rows:
                log.warning(
                    "Store released seqs it will never send; their gap is closed.",
                    extra={"store": store, "from_seq": lo, "to_seq": hi, "cause": item.cause},
                )
            closed.append((lo, hi))
        return closed

    async def _advance(
        self,
        c: Conn,
        store: str,
        contiguous: int,
        max_seq: int,
        seqs: set[int],
        at: Any,
        closed: Sequence[tuple[int, int]] = (),
    ) -> tuple[int, int]:
        """Move the store's gap-free watermark over `seqs` and bring its gaps up to date.

        Receipts above the watermark and the gaps between them are both kept as ranges, so
        the work is linear in the batch and in the number of ranges, whatever the seqs say
        (one record with seq 2**63-1 is one receipt range and one gap)."""
        fresh = merge_ranges([*runs(s for s in seqs if s > contiguous), *closed])
        if not fresh:
            return contiguous, max_seq
        old_receipts: list[tuple[int, int]] = []
        if max_seq > contiguous:
            rows = await c.fetch(
                "SELECT seq, to_seq FROM receipts WHERE store = ? ORDER BY seq", (store,)
            )
            old_receipts = [(lo, hi if hi is not None else lo) for lo, hi in rows]
        merged = merge_ranges([*old_receipts, *fresh])
        watermark = contiguous
        if merged and merged[0][0] <= watermark + 1:
            watermark = max(watermark, merged[0][1])
            merged = merged[1:]
        top = max(max_seq, watermark, *(hi for _, hi in merged))
        if merged != old_receipts:
            await c.run("DELETE FROM receipts WHERE store = ?", (store,))
            await c.run_many(
                "INSERT INTO receipts (store, seq, to_seq, received_at) VALUES (?, ?, ?, ?)",
                [(store, lo, hi, at) for lo, hi in merged],
            )
        missing = holes(watermark, merged)
        # Gaps lie between the watermark and the highest seq: a store with none before
        # this batch has no gap rows to read.
        old = (
            await c.fetch(
                "SELECT from_seq, to_seq, first_seen, last_requested, requests, next_request "
                "FROM gaps WHERE store = ?",
                (store,),
            )
            if max_seq > contiguous
            else []
        )
        if [(f, t) for f, t, *_ in sorted(old)] != missing:
            await c.run("DELETE FROM gaps WHERE store = ?", (store,))
            rows_out = []
            old_sorted = sorted(old)
            index = 0
            for lo, hi in missing:
                # Both lists are sorted and the new gaps lie inside the old ones or beyond
                # them: one walk finds the old gaps each new one overlaps.
                while index < len(old_sorted) and old_sorted[index][1] < lo:
                    index += 1
                overlap = []
                probe = index
                while probe < len(old_sorted) and old_sorted[probe][0] <= hi:
                    overlap.append(old_sorted[probe])
                    probe += 1
                first_seen = min((o[2] for o in overlap), default=at)
                asked = [o[3] for o in overlap if o[3] is not None]
                requests = max((o[4] for o in overlap), default=0)
                due = [o[5] for o in overlap if o[5] is not None]
                rows_out.append(
                    (
                        store,
                        lo,
                        hi,
                        first_seen,
                        max(asked, default=None),
                        requests,
                        max(due, default=None),
                    )
                )
            if rows_out:
                await c.run_many(
                    "INSERT INTO gaps (store, from_seq, to_seq, first_seen, last_requested, "
                    "requests, next_request) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows_out,
                )
        return watermark, top

    async def record_heartbeat(self, heartbeat: Heartbeat, *, now: datetime | None = None) -> None:
        at = self._ts(now or utcnow())
        agent_id = heartbeat.agent.id if heartbeat.agent else None
        version = heartbeat.agent.version if heartbeat.agent else None
        online = heartbeat.state == "online"  # an offline notice does not know the orders

        async def body(c: Conn) -> None:
            await c.run(
                "INSERT INTO stores (store, state, first_seen, last_seen, agent_id, agent_version, "
                "backlog_rows, oldest_unacked_seconds, orders_waiting, orders_alert) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (store) DO UPDATE SET state = excluded.state, "
                "last_seen = CASE WHEN excluded.state = 'online' THEN excluded.last_seen "
                "ELSE stores.last_seen END, "
                "agent_id = COALESCE(excluded.agent_id, stores.agent_id), "
                "agent_version = COALESCE(excluded.agent_version, stores.agent_version), "
                # An offline notice (the last will, a goodbye) does not know the backlog:
                # the last reported backlog and lag stay, for Fleet to show while away.
                "backlog_rows = CASE WHEN excluded.state = 'online' THEN excluded.backlog_rows "
                "ELSE stores.backlog_rows END, "
                "oldest_unacked_seconds = CASE WHEN excluded.state = 'online' "
                "THEN excluded.oldest_unacked_seconds ELSE stores.oldest_unacked_seconds END, "
                # Likewise the orders the store holds and has not written to the POS.
                "orders_waiting = CASE WHEN excluded.state = 'online' "
                "THEN excluded.orders_waiting ELSE stores.orders_waiting END, "
                "orders_alert = CASE WHEN excluded.state = 'online' "
                "THEN excluded.orders_alert ELSE stores.orders_alert END",
                (
                    heartbeat.store,
                    heartbeat.state,
                    at,
                    at,
                    agent_id,
                    version,
                    heartbeat.backlog_rows,
                    heartbeat.oldest_unacked_seconds,
                    heartbeat.orders_waiting if online else None,
                    heartbeat.orders_alert if online else None,
                ),
            )

        await self._run(body)

    async def record_refusal(
        self,
        kind: str,
        topic_store: str,
        envelope_store: str | None,
        batch_id: str | None,
        reason: str,
        *,
        now: datetime | None = None,
    ) -> None:
        at = self._ts(now or utcnow())

        async def body(c: Conn) -> None:
            await c.run(
                "INSERT INTO refusals (kind, topic_store, envelope_store, batch_id, reason, "
                "relay_id, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, topic_store, envelope_store, batch_id, reason, self.relay_id, at),
            )

        await self._run(body)

    # -- delivery -------------------------------------------------------------------------

    def _claimed(self, row: Sequence[Any]) -> ClaimedRecord:
        rid, key, store, seq, kind, state, attempts, cid, body = row
        return ClaimedRecord(
            id=rid,
            key=key,
            store=store,
            seq=seq,
            kind=kind,
            state=RecordState(state),
            attempts=attempts,
            correlation_id=cid,
            body=self._obj(body),
        )

    async def claim(
        self,
        n: int,
        relay_id: str,
        lease: timedelta,
        *,
        now: datetime | None = None,
        states: Sequence[RecordState] = CLAIMABLE,
    ) -> list[ClaimedRecord]:
        moment = now or utcnow()
        at, until = self._ts(moment), self._ts(moment + lease)
        wanted = [RecordState(s).value for s in states]

        async def body(c: Conn) -> list[ClaimedRecord]:
            rows = await c.fetch(
                "UPDATE records SET claimed_by = ?, lease_until = ? WHERE id IN ("
                f"SELECT id FROM records WHERE state IN ({_marks(len(wanted))}) "
                "AND (lease_until IS NULL OR lease_until < ?) "
                "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
                f"ORDER BY id LIMIT ?{self.skip_locked}) RETURNING {_CLAIMED_COLUMNS}",
                (relay_id, until, *wanted, at, at, n),
            )
            return sorted((self._claimed(r) for r in rows), key=lambda r: r.id)

        return await self._run(body)

    async def transition(
        self,
        ids: Sequence[int],
        state: RecordState,
        *,
        relay_id: str,
        detail: str | None = None,
        retry_at: datetime | None = None,
        now: datetime | None = None,
    ) -> list[int]:
        state = RecordState(state)
        at = self._ts(now or utcnow())
        sources = [s.value for s in ALLOWED_FROM[state]]
        retry = self._ts(retry_at) if retry_at is not None else None
        bump = 1 if state is RecordState.RETRYING else 0
        ids = list(ids)

        async def body(c: Conn) -> list[int]:
            moved: list[tuple[int, str, str, int]] = []
            for part in _chunks(ids):
                rows = await c.fetch(
                    "UPDATE records SET state = ?, updated_at = ?, claimed_by = NULL, "
                    "lease_until = NULL, next_attempt_at = ?, attempts = attempts + ? "
                    f"WHERE id IN ({_marks(len(part))}) AND state IN ({_marks(len(sources))}) "
                    "AND (claimed_by IS NULL OR claimed_by = ? OR lease_until < ?) "
                    "RETURNING id, key, store, seq",
                    (state.value, at, retry, bump, *part, *sources, relay_id, at),
                )
                moved.extend(rows)
            await self._history(c, [(r[0], state.value, detail) for r in moved], at, relay_id)
            if state is RecordState.EXCEPTION:
                await c.run_many(
                    "INSERT INTO exceptions (store, seq, key, record_id, reason, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(st, seq, key, rid, detail or "exception", at) for rid, key, st, seq in moved],
                )
            if state is RecordState.POSTED and moved:
                await self._release(c, [r[1] for r in moved], at, relay_id)
            return sorted(r[0] for r in moved)

        return await self._run(body)

    async def _history(
        self, c: Conn, rows: Sequence[tuple[int, str, str | None]], at: Any, relay_id: str
    ) -> None:
        if rows:
            await c.run_many(
                "INSERT INTO record_states (record_id, state, at, relay_id, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                [(rid, st, at, relay_id, detail) for rid, st, detail in rows],
            )

    async def _release(self, c: Conn, keys: Sequence[str], at: Any, relay_id: str) -> None:
        """Parked returns and voids whose original is now posted go back to work."""
        released: list[tuple[int, str, str | None]] = []
        for part in _chunks(keys):
            rows = await c.fetch(
                "UPDATE records SET state = 'received', updated_at = ? WHERE state = 'parked' "
                f"AND link_key IN ({_marks(len(part))}) RETURNING id",
                (at, *part),
            )
            released += [(r[0], RecordState.RECEIVED.value, "original posted") for r in rows]
        await self._history(c, released, at, relay_id)

    async def sweep_parked(self, *, now: datetime | None = None) -> int:
        at = self._ts(now or utcnow())

        async def body(c: Conn) -> int:
            rows = await c.fetch(
                "UPDATE records SET state = 'received', updated_at = ? WHERE state = 'parked' "
                "AND EXISTS (SELECT 1 FROM records AS o WHERE o.key = records.link_key "
                "AND o.state = 'posted') RETURNING id",
                (at,),
            )
            released = [(r[0], RecordState.RECEIVED.value, "original posted") for r in rows]
            await self._history(c, released, at, self.relay_id)
            return len(released)

        return await self._run(body)

    async def expire_parked(self, max_age: timedelta, *, now: datetime | None = None) -> list[int]:
        moment = now or utcnow()
        at, cutoff = self._ts(moment), self._ts(moment - max_age)
        hours = max_age.total_seconds() / 3600
        reason = f"original not posted within {hours:g} hours"

        async def body(c: Conn) -> list[int]:
            rows = await c.fetch(
                "UPDATE records SET state = 'exception', updated_at = ? "
                "WHERE state = 'parked' AND updated_at < ? RETURNING id, key, store, seq, link_key",
                (at, cutoff),
            )
            await self._history(
                c, [(r[0], RecordState.EXCEPTION.value, reason) for r in rows], at, self.relay_id
            )
            await c.run_many(
                "INSERT INTO exceptions (store, seq, key, record_id, reason, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(st, seq, key, rid, f"{reason}: {link}", at) for rid, key, st, seq, link in rows],
            )
            return sorted(r[0] for r in rows)

        return await self._run(body)

    # -- reading --------------------------------------------------------------------------

    async def ping(self) -> None:
        """One trivial round trip: the database answers."""

        async def body(c: Conn) -> None:
            await c.fetch("SELECT 1")

        await self._run(body)

    async def record_by_key(self, key: str) -> ClaimedRecord | None:
        async def body(c: Conn) -> ClaimedRecord | None:
            rows = await c.fetch(f"SELECT {_CLAIMED_COLUMNS} FROM records WHERE key = ?", (key,))
            return self._claimed(rows[0]) if rows else None

        return await self._run(body)

    async def history(self, record_id: int) -> list[tuple[str, datetime, str | None]]:
        async def body(c: Conn) -> list[tuple[str, datetime, str | None]]:
            rows = await c.fetch(
                "SELECT state, at, detail FROM record_states WHERE record_id = ? ORDER BY id",
                (record_id,),
            )
            return [(s, self._dt(at), d) for s, at, d in rows]

        return await self._run(body)

    def _gap(self, row: Sequence[Any]) -> Gap:
        store, lo, hi, first_seen, asked, requests = row
        return Gap(
            store=store,
            from_seq=lo,
            to_seq=hi,
            first_seen=self._dt(first_seen),
            last_requested=self._dt(asked) if asked is not None else None,
            requests=requests,
        )

    async def gaps(self, store: str | None = None) -> list[Gap]:
        where, params = ("WHERE store = ? ", (store,)) if store is not None else ("", ())

        async def body(c: Conn) -> list[Gap]:
            rows = await c.fetch(
                "SELECT store, from_seq, to_seq, first_seen, last_requested, requests FROM gaps "
                f"{where}ORDER BY store, from_seq",
                params,
            )
            return [self._gap(r) for r in rows]

        return await self._run(body)

    async def due_gaps(
        self,
        grace: timedelta,
        *,
        limit: int = 100,
        max_requests: int = 10,
        now: datetime | None = None,
    ) -> list[Gap]:
        moment = now or utcnow()
        at, cutoff = self._ts(moment), self._ts(moment - grace)

        async def body(c: Conn) -> list[Gap]:
            # A request counts towards `max_requests` only when the store could have
            # answered it: not while it is offline (the request waits for it), nor while
            # its last heartbeat still reported rows to send (a store draining a long
            # backlog sends the missing seqs in their turn). Either way it is asked again.
            rows = await c.fetch(
                "UPDATE gaps SET last_requested = ?, requests = requests + CASE WHEN EXISTS "
                "(SELECT 1 FROM stores s WHERE s.store = gaps.store AND (s.state = 'offline' "
                "OR (s.state = 'online' AND s.backlog_rows > 0))) THEN 0 ELSE 1 END "
                "WHERE (store, from_seq) IN (SELECT store, from_seq FROM gaps "
                "WHERE first_seen <= ? AND requests < ? "
                "AND (next_request IS NULL OR next_request <= ?) "
                f"ORDER BY first_seen LIMIT ?{self.skip_locked}) "
                "RETURNING store, from_seq, to_seq, first_seen, last_requested, requests",
                (at, cutoff, max_requests, at, limit),
            )
            gaps = sorted((self._gap(r) for r in rows), key=lambda g: (g.store, g.from_seq))
            # Each request doubles the wait before the next, up to 64 × the grace period.
            await c.run_many(
                "UPDATE gaps SET next_request = ? WHERE store = ? AND from_seq = ?",
                [
                    (self._ts(moment + grace * 2 ** min(g.requests, 6)), g.store, g.from_seq)
                    for g in gaps
                ],
            )
            given_up = [g for g in gaps if g.requests >= max_requests]
            for gap in given_up:
                await c.run(
                    "INSERT INTO exceptions (store, seq, key, reason, payload, dedupe, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe) DO NOTHING",
                    (
                        gap.store,
                        gap.from_seq,
                        None,
                        f"seqs {gap.from_seq}-{gap.to_seq} still missing after "
                        f"{gap.requests} requests to the store: look at the store's outbox",
                        None,
                        f"gap:{gap.store}:{gap.from_seq}:{gap.to_seq}",
                        at,
                    ),
                )
            return gaps

        return await self._run(body)

    async def releases(self, store: str | None = None, *, limit: int = 100) -> list[Released]:
        where, params = ("WHERE store = ? ", [store]) if store is not None else ("", [])

        async def body(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT store, from_seq, to_seq, cause, reason, received_at FROM releases "
                f"{where}ORDER BY received_at DESC, id DESC LIMIT ?",
                [*params, max(1, min(limit, 1000))],
            )

        return [
            Released(
                store=r[0],
                from_seq=r[1],
                to_seq=r[2],
                cause=r[3],
                reason=r[4],
                received_at=self._dt(r[5]),
            )
            for r in await self._run(body)
        ]

    async def stores(self) -> list[StoreStatus]:
        gaps = await self.gaps()
        latest: dict[str, Released] = {}
        for item in await self.releases(limit=1000):
            latest.setdefault(item.store, item)

        async def body(c: Conn) -> list[tuple[Any, ...]]:
            return await c.fetch(
                "SELECT store, state, first_seen, last_seen, agent_id, agent_version, "
                "backlog_rows, oldest_unacked_seconds, contiguous_seq, max_seq, records, "
                "duplicates, orders_waiting, orders_alert FROM stores ORDER BY store"
            )

        rows = await self._run(body)
        return [
            StoreStatus(
                store=r[0],
                state=r[1],
                first_seen=self._dt(r[2]),
                last_seen=self._dt(r[3]),
                agent_id=r[4],
                agent_version=r[5],
                backlog_rows=r[6],
                oldest_unacked_seconds=r[7],
                contiguous_seq=r[8],
                max_seq=r[9],
                records=r[10],
                duplicates=r[11],
                gaps=[g for g in gaps if g.store == r[0]],
                last_release=latest.get(r[0]),
                orders_waiting=r[12],
                orders_alert=r[13],
            )
            for r in rows
        ]

    async def stats(self) -> dict[str, Any]:
        async def body(c: Conn) -> dict[str, Any]:
            by_state = {s.value: 0 for s in RecordState}
            for state, count in await c.fetch("SELECT state, COUNT(*) FROM records GROUP BY state"):
                by_state[state] = int(count)
            ((stores, duplicates, online),) = await c.fetch(
                "SELECT COUNT(*), COALESCE(SUM(duplicates), 0), "
                "COALESCE(SUM(CASE WHEN state = 'online' THEN 1 ELSE 0 END), 0) FROM stores"
            )
            ((exceptions,),) = await c.fetch(
                "SELECT COUNT(*) FROM exceptions WHERE resolved_at IS NULL"
            )
            ((refused, spoofed),) = await c.fetch(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN kind = 'spoofed' THEN 1 ELSE 0 END), 0) "
                "FROM refusals"
            )
            ((gaps, missing),) = await c.fetch(
                "SELECT COUNT(*), "
                "COALESCE(SUM(CAST(to_seq - from_seq + 1 AS DOUBLE PRECISION)), 0) FROM gaps"
            )
            return {
                "records": sum(by_state.values()),
                "by_state": by_state,
                "stores": int(stores),
                "exceptions": int(exceptions),
                "duplicates": int(duplicates),
                "refused": int(refused),
                "spoofed": int(spoofed),
                "gaps": int(gaps),
                "missing": int(missing),  # summed as a float: no overflow
                "online": int(online),
            }

        return await self._run(body)
