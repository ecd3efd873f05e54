"""The outbox file: schema, pragmas, the start-up integrity check and moving a damaged
database aside (never deleting it)."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from agent import _failpoints as failpoints

__all__ = [
    "SCHEMA",
    "Recovery",
    "check_or_move_aside",
    "connect_pragmas",
    "last_seq_aside",
    "schema_statements",
]

log = logging.getLogger("tillbridge.agent.outbox")

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per record. seq is the per-store, gap-free sequence number on the wire.
-- The row is narrow because its state changes; the record itself is in `bodies`.
CREATE TABLE IF NOT EXISTS records (
    seq            INTEGER PRIMARY KEY,
    key            TEXT NOT NULL UNIQUE,
    kind           TEXT NOT NULL,
    business_date  TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    sealed         INTEGER NOT NULL DEFAULT 0,
    size           INTEGER NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | acked
    created_at     REAL NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_attempt   REAL,
    acked_at       REAL,
    rejected       TEXT                     -- central's reason when it kept the record aside
);
-- The record as it travels (the contract's WireRecord JSON), sealed when it holds contact.
CREATE TABLE IF NOT EXISTS bodies (
    seq  INTEGER PRIMARY KEY,
    wire BLOB NOT NULL
);
-- Only rows central has not acknowledged are indexed: a row sent leaves the index alone,
-- a row acknowledged leaves it, so the index stays as small as the backlog.
CREATE INDEX IF NOT EXISTS records_unacked ON records (seq) WHERE state != 'acked';
CREATE INDEX IF NOT EXISTS records_day ON records (business_date, kind);
-- Files whose records are committed: the content hash keeps a file from being taken twice.
CREATE TABLE IF NOT EXISTS files (
    sha256      TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    name        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    ingested_at REAL NOT NULL,
    inserted    INTEGER NOT NULL,
    duplicates  INTEGER NOT NULL,
    skipped     INTEGER NOT NULL,
    unchanged   INTEGER NOT NULL DEFAULT 0
);
-- Transactions counted but not forwarded (training, control, suspended), per business day.
CREATE TABLE IF NOT EXISTS skipped (
    business_date TEXT NOT NULL,
    reason        TEXT NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (business_date, reason)
);
-- End-of-day summaries sent, so late records of a closed day raise the revision.
CREATE TABLE IF NOT EXISTS days (
    business_date TEXT PRIMARY KEY,
    revision      INTEGER NOT NULL,
    summarised_at REAL NOT NULL,
    last_seq      INTEGER NOT NULL
);
-- The last on-hand level queued per SKU and location: unchanged levels are not sent again.
CREATE TABLE IF NOT EXISTS levels (
    location TEXT NOT NULL,
    sku      TEXT NOT NULL,
    quantity TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (location, sku)
);
"""


def schema_statements() -> list[str]:
    """SCHEMA as single statements, to run inside a transaction of the caller's (a
    `;` inside a comment does not end a statement)."""
    out: list[str] = []
    current = ""
    for line in SCHEMA.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Recovery:
    """A damaged outbox was moved aside at start; its records are re-read from the archive."""

    moved_to: Path
    reason: str
    last_seq: int  # the highest seq still readable in the damaged file (0 when none)
    at: datetime


def connect_pragmas() -> list[str]:
    """Durable and fast enough: WAL, a full fsync per commit, foreign keys off (none)."""
    return [
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA busy_timeout=10000",
        "PRAGMA wal_autocheckpoint=4000",
        "PRAGMA temp_store=MEMORY",
        # 8 MB of page cache: a week's backlog drains without re-reading index pages,
        # and the agent stays well inside its memory budget.
        "PRAGMA cache_size=-8000",
    ]


def _integrity_problem(path: Path) -> str | None:
    """None when the file passes `PRAGMA quick_check`, else what is wrong."""
    try:
        conn = sqlite3.connect(path)
    except sqlite3.DatabaseError as exc:
        return str(exc)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()
    verdict = "; ".join(str(r[0]) for r in rows[:5])
    return None if verdict == "ok" else verdict


def _last_seq(path: Path) -> int:
    """Best effort: the highest seq a damaged file still yields (it may be partly readable)."""
    best = 0
    for sql in ("SELECT value FROM meta WHERE name = 'last_seq'", "SELECT max(seq) FROM records"):
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = conn.execute(sql).fetchone()
            finally:
                conn.close()
            if row and row[0] is not None:
                best = max(best, int(row[0]))
        except (sqlite3.DatabaseError, ValueError):
            continue
    return best


_COMPANIONS = ("-wal", "-shm", "-journal")


def _aside_name(path: Path, now: datetime) -> Path:
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while any(Path(str(target) + s).exists() for s in ("", *_COMPANIONS)):
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    return target


def _move_aside(path: Path, target: Path) -> None:
    """The WAL and its companions go first, the main file last: a stop between the two
    leaves the damaged file where the next start finds it again. The other way round, a
    new database could open with the old WAL beside it and replay its pages."""
    for suffix in _COMPANIONS:
        part = Path(str(path) + suffix)
        if part.exists():
            part.rename(Path(str(target) + suffix))
    failpoints.hit("outbox.wal_moved_aside")
    if path.exists():
        path.rename(target)
    failpoints.hit("outbox.moved_aside")


def check_or_move_aside(path: Path) -> Recovery | None:
    """Check the outbox at start; move a damaged one (and its WAL) aside, never delete it."""
    if not path.exists():
        orphans = [s for s in _COMPANIONS if Path(str(path) + s).exists()]
        if orphans:  # a WAL without its database: never let a new database replay it
            target = _aside_name(path, datetime.now(UTC))
            _move_aside(path, target)
            log.warning(
                "Outbox companion files without their database moved aside.",
                extra={"moved_to": str(target), "files": orphans},
            )
        return None
    problem = _integrity_problem(path)
    if problem is None:
        return None
    last_seq = _last_seq(path)
    now = datetime.now(UTC)
    target = _aside_name(path, now)
    _move_aside(path, target)
    log.error(
        "Outbox database is damaged; moved aside and rebuilt. Records not known to be "
        "acknowledged are re-read from the archive.",
        extra={"moved_to": str(target), "problem": problem, "last_seq": last_seq},
    )
    return Recovery(moved_to=target, reason=problem, last_seq=last_seq, at=now)


def last_seq_aside(path: Path) -> int:
    """The highest seq any damaged outbox moved aside beside `path` still yields: a new
    outbox numbers on from there, even when the stop came before it could note it."""
    best = 0
    for aside in path.parent.glob(f"{path.name}.damaged-*"):
        if not aside.name.endswith(_COMPANIONS):
            best = max(best, _last_seq(aside))
    return best
