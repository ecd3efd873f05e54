"""Refused transactions held in the outbox, and records central rejected for good, listed
for field support (`quarantine list`).

Read through a read-only connection, so the list can be taken beside a running agent; a
refused record carries no customer, so its body is never sealed. Rows central
acknowledged stay listed until the audit window purges them.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

__all__ = ["RefusedRow", "RejectedRow", "list_refused", "list_rejected", "refused_body"]


@dataclasses.dataclass(frozen=True, slots=True)
class RefusedRow:
    """One refused transaction as the outbox holds it."""

    seq: int
    key: str
    business_date: str
    state: str  # pending | sent | acked
    file: str
    place: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class RejectedRow:
    """A record central answered as rejected on the ack path: kept, never sent again."""

    seq: int
    key: str
    kind: str
    business_date: str
    reason: str


def list_rejected(path: Path, limit: int = 500) -> list[RejectedRow]:
    """The records central rejected, oldest first (none without an outbox). Only their
    key and central's reason are read: a body may be sealed, and is not needed here."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT seq, key, kind, business_date, rejected FROM records "
            "WHERE rejected IS NOT NULL ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
    finally:
        db.close()
    return [
        RejectedRow(int(seq), str(key), str(kind), str(day), str(reason))
        for seq, key, kind, day, reason in rows
    ]


def list_refused(path: Path, limit: int = 500) -> list[RefusedRow]:
    """The refused transactions in the outbox at `path`, oldest first (none without one)."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT r.seq, r.key, r.business_date, r.state, r.sealed, b.wire FROM records AS r "
            "LEFT JOIN bodies AS b ON b.seq = r.seq WHERE r.kind = 'refused' "
            "ORDER BY r.seq LIMIT ?",
            (limit,),
        ).fetchall()
    finally:
        db.close()
    found = []
    for seq, key, day, state, sealed, wire in rows:
        body = json.loads(bytes(wire))["body"] if wire is not None and not sealed else {}
        found.append(
            RefusedRow(
                seq=int(seq),
                key=str(key),
                business_date=str(day),
                state=str(state),
                file=str(body.get("source", {}).get("file", "")),
                place=str(body.get("place", "")),
                reason=str(body.get("reason", "")),
            )
        )
    return found


def refused_body(path: Path, key: str) -> dict[str, Any] | None:
    """The body of the refused record `key` in the outbox at `path` (None without one).
    A purged row is gone: its transaction is then read again from the archive by name."""
    if not path.exists():
        return None
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT r.sealed, b.wire FROM records AS r LEFT JOIN bodies AS b ON b.seq = r.seq "
            "WHERE r.kind = 'refused' AND r.key = ? ORDER BY r.seq DESC LIMIT 1",
            (key,),
        ).fetchone()
    finally:
        db.close()
    if row is None or row[1] is None or row[0]:
        return None
    body: dict[str, Any] = json.loads(bytes(row[1]))["body"]
    return body
