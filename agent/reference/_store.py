"""The local reference store (`reference.db` beside `downlink.db`): the newest state of
every customer and item central sent this store, so the till can look them up with the
link down, and the store's open requests for a full resync.

A customer's contact fields (names, email, phone) are sealed with the outbox key, bound to
the entity, as the outbox seals records that carry contact; identifiers, tier, points and
preferences stay readable so a loyalty id can be looked up by index. A state replaces the
stored one only when its downlink seq is higher: a resend never turns an entity back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from agent._seal import Sealer
from contract import CustomerPurge, RefCustomer, RefItem, reference_entity

__all__ = [
    "RESYNC_KINDS",
    "RefState",
    "ReferenceStore",
    "ReferenceSummary",
    "request_resync",
    "summarise_reference",
]

log = logging.getLogger("tillbridge.agent.reference")

T = TypeVar("T")
Resync = Literal["customers", "items"]
RESYNC_KINDS: tuple[Resync, ...] = ("customers", "items")

CONTACT = ("first_name", "last_name", "email", "phone")
"""The fields sealed at rest (and never logged)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS customers (
    entity      TEXT PRIMARY KEY,   -- customer:source:customer_id
    loyalty_id  TEXT,
    seq         INTEGER NOT NULL,   -- the downlink seq of this state
    changed_at  TEXT NOT NULL,
    data        TEXT NOT NULL,      -- the state without contact fields (JSON)
    contact     BLOB                -- the contact fields, sealed with the outbox key
);
CREATE INDEX IF NOT EXISTS customers_loyalty ON customers (loyalty_id);
CREATE TABLE IF NOT EXISTS items (
    entity      TEXT PRIMARY KEY,   -- item:source:sku
    sku         TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    changed_at  TEXT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_sku ON items (sku);
-- The version of each entity the POS was given: the same version again (a resync
-- answer, a resend under a new seq) is not written again.
CREATE TABLE IF NOT EXISTS written (
    entity   TEXT PRIMARY KEY,
    version  TEXT NOT NULL
);
-- An open request to central for a kind of reference data whole (`resync`).
CREATE TABLE IF NOT EXISTS resync (
    kind          TEXT PRIMARY KEY,  -- customers | items
    requested_at  TEXT NOT NULL,     -- ISO 8601, aware
    reason        TEXT NOT NULL
);
"""

Body = RefCustomer | CustomerPurge | RefItem


@dataclasses.dataclass(frozen=True, slots=True)
class RefState:
    """The newest state of one entity in a pass of the writer loop."""

    seq: int
    body: Body
    issued_at: datetime

    @property
    def entity(self) -> str:
        return reference_entity(self.body)


@dataclasses.dataclass(frozen=True, slots=True)
class ReferenceSummary:
    customers: int
    items: int
    last_change_at: str | None
    """When the store last took a reference message (its own clock, ISO 8601)."""
    resync: dict[str, str]
    """Open resync requests: kind → when asked."""


def resync_kind(body: Body) -> Resync:
    return "items" if isinstance(body, RefItem) else "customers"


class ReferenceStore:
    """Open with `ReferenceStore.open(path, sealer)`; every method runs on a worker thread,
    one at a time."""

    def __init__(
        self, path: Path, conn: sqlite3.Connection, sealer: Sealer, *, fresh: bool
    ) -> None:
        self.path = path
        self._conn = conn
        self._sealer = sealer
        self._lock = threading.Lock()
        self.fresh = fresh
        """The file was made on this open: first start, or the old one was lost."""

    @classmethod
    async def open(cls, path: Path, sealer: Sealer) -> ReferenceStore:
        def connect() -> tuple[sqlite3.Connection, bool]:
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not path.exists()
            try:
                return _connect(path), fresh
            except sqlite3.DatabaseError as exc:
                # Reference data is a copy of central's: move the damaged file aside for
                # field support and start empty (the caller asks central for it whole).
                aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
                log.error(
                    "Reference store damaged; moved aside, starting empty.",
                    extra={"path": str(path), "moved_to": str(aside), "error": str(exc)},
                )
                path.rename(aside)
                for suffix in ("-wal", "-shm"):
                    path.with_name(path.name + suffix).unlink(missing_ok=True)
                return _connect(path), True

        conn, fresh = await asyncio.to_thread(connect)
        return cls(path, conn, sealer, fresh=fresh)

    async def close(self) -> None:
        await self._run(self._conn.close)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    # -- taking states --------------------------------------------------------------------

    async def apply(
        self, states: Sequence[RefState], now: float | None = None
    ) -> tuple[list[str], set[int]]:
        """Store each state in one transaction (a customer purge deletes the customer);
        a state older than the stored one is skipped. Open resync requests that these
        messages answer are closed. Returns the resync kinds closed, and the seqs of the
        states the store held already, version for version (a resync answer, a resend):
        the POS has them, they are not written again."""
        return await self._run(self._apply, states, now or time.time())

    def _apply(self, states: Sequence[RefState], now: float) -> tuple[list[str], set[int]]:
        conn = self._conn
        held: set[int] = set()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for state in states:
                if self._apply_one(state):
                    held.add(state.seq)
            answered = []
            for kind, asked in conn.execute("SELECT kind, requested_at FROM resync").fetchall():
                since = datetime.fromisoformat(asked)
                if any(resync_kind(s.body) == kind and s.issued_at >= since for s in states):
                    answered.append(kind)
            for kind in answered:
                conn.execute("DELETE FROM resync WHERE kind = ?", (kind,))
            if states:
                _set_meta(
                    conn, "last_change_at", datetime.fromtimestamp(now).astimezone().isoformat()
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if any(isinstance(s.body, CustomerPurge) for s in states):
            # The write-ahead log still holds the purged rows' pages: empty it too.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return answered, held

    def _apply_one(self, state: RefState) -> bool:
        """Store one state; True when the store held this very version already."""
        conn = self._conn
        body = state.body
        entity = state.entity
        if isinstance(body, CustomerPurge):
            conn.execute("DELETE FROM customers WHERE entity = ?", (entity,))
            conn.execute("DELETE FROM written WHERE entity = ?", (entity,))
            return False
        table = "items" if isinstance(body, RefItem) else "customers"
        row = conn.execute(f"SELECT seq FROM {table} WHERE entity = ?", (entity,)).fetchone()  # noqa: S608 - table is one of two names
        if row is not None and row[0] > state.seq:
            return False  # a newer state is held already
        given = conn.execute("SELECT version FROM written WHERE entity = ?", (entity,)).fetchone()
        if given is not None and given[0] == body.version:
            return True  # the POS was given this very version already
        data = body.model_dump(mode="json")
        changed = body.changed_at.isoformat()
        if isinstance(body, RefItem):
            conn.execute(
                "INSERT INTO items (entity, sku, seq, changed_at, data) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (entity) DO UPDATE SET sku = excluded.sku, seq = excluded.seq,"
                " changed_at = excluded.changed_at, data = excluded.data",
                (entity, body.sku, state.seq, changed, json.dumps(data)),
            )
            return False
        contact = {name: data.pop(name) for name in CONTACT}
        sealed = self._sealer.seal(json.dumps(contact).encode(), entity)
        conn.execute(
            "INSERT INTO customers (entity, loyalty_id, seq, changed_at, data, contact)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (entity) DO UPDATE SET"
            " loyalty_id = excluded.loyalty_id, seq = excluded.seq,"
            " changed_at = excluded.changed_at, data = excluded.data, contact = excluded.contact",
            (entity, body.loyalty_id, state.seq, changed, json.dumps(data), sealed),
        )
        return False

    async def close_resync(self, kind: str, requested_at: datetime) -> bool:
        """Central answered the request made at `requested_at`: close it, unless the store
        asked again since. True when a request was closed."""

        def close() -> bool:
            row = self._conn.execute(
                "SELECT requested_at FROM resync WHERE kind = ?", (kind,)
            ).fetchone()
            if row is None or datetime.fromisoformat(row[0]) > requested_at:
                return False
            with self._conn:
                self._conn.execute("DELETE FROM resync WHERE kind = ?", (kind,))
            return True

        return await self._run(close)

    async def mark_written(self, states: Sequence[RefState]) -> None:
        """The POS was given these states (each entity's version, for `apply`)."""

        def mark() -> None:
            rows = [
                (s.entity, s.body.version) for s in states if not isinstance(s.body, CustomerPurge)
            ]
            with self._conn:
                self._conn.executemany(
                    "INSERT INTO written (entity, version) VALUES (?, ?) ON CONFLICT (entity)"
                    " DO UPDATE SET version = excluded.version",
                    rows,
                )

        await self._run(mark)

    # -- looking up -----------------------------------------------------------------------

    async def customers_by_loyalty(self, loyalty_id: str) -> list[dict[str, Any]]:
        """Every customer with this loyalty id, contact fields opened."""

        def query() -> list[dict[str, Any]]:
            rows = self._conn.execute(
                "SELECT entity, data, contact FROM customers WHERE loyalty_id = ? ORDER BY entity",
                (loyalty_id,),
            ).fetchall()
            return [self._customer(*row) for row in rows]

        return await self._run(query)

    def _customer(self, entity: str, data: str, contact: bytes | None) -> dict[str, Any]:
        customer: dict[str, Any] = json.loads(data)
        if contact is not None:
            customer.update(json.loads(self._sealer.open(contact, entity)))
        return customer

    async def item(self, sku: str) -> dict[str, Any] | None:
        """The item with this POS item id (the newest change when two feeds name it)."""

        def query() -> dict[str, Any] | None:
            row = self._conn.execute(
                "SELECT data FROM items WHERE sku = ? ORDER BY changed_at DESC, seq DESC LIMIT 1",
                (sku,),
            ).fetchone()
            return None if row is None else dict(json.loads(row[0]))

        return await self._run(query)

    # -- resync ---------------------------------------------------------------------------

    async def request_resync(self, kinds: Sequence[Resync], reason: str) -> datetime:
        return await self._run(request_resync, self._conn, kinds, reason)

    async def pending_resync(self) -> dict[str, datetime]:
        """Open requests: kind → when asked."""

        def query() -> dict[str, datetime]:
            rows = self._conn.execute("SELECT kind, requested_at FROM resync ORDER BY kind")
            return {kind: datetime.fromisoformat(at) for kind, at in rows}

        return await self._run(query)

    async def summary(self) -> ReferenceSummary:
        return await self._run(summarise_reference, self._conn)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA busy_timeout=10000",
            "PRAGMA secure_delete=ON",  # a purged customer's row does not linger in free pages
        ):
            conn.execute(pragma)
        conn.executescript(_SCHEMA)
        conn.execute("SELECT count(*) FROM customers").fetchone()
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def _set_meta(conn: sqlite3.Connection, name: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


def request_resync(
    conn: sqlite3.Connection, kinds: Sequence[Resync], reason: str, now: datetime | None = None
) -> datetime:
    """Open (or renew) a request for each kind; also used by the `resync` command on the
    file while the daemon runs (SQLite serialises the two writers)."""
    at = now or datetime.now().astimezone()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for kind in kinds:
            conn.execute(
                "INSERT INTO resync VALUES (?, ?, ?) ON CONFLICT (kind) DO UPDATE SET"
                " requested_at = excluded.requested_at, reason = excluded.reason",
                (kind, at.isoformat(), reason),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return at


def summarise_reference(conn: sqlite3.Connection) -> ReferenceSummary:
    """What status shows; also used on the file when the agent is not running."""
    (customers,) = conn.execute("SELECT count(*) FROM customers").fetchone()
    (items,) = conn.execute("SELECT count(*) FROM items").fetchone()
    last = conn.execute("SELECT value FROM meta WHERE name = 'last_change_at'").fetchone()
    resync = dict(conn.execute("SELECT kind, requested_at FROM resync ORDER BY kind").fetchall())
    return ReferenceSummary(
        customers=int(customers),
        items=int(items),
        last_change_at=None if last is None else str(last[0]),
        resync={str(k): str(v) for k, v in resync.items()},
    )
