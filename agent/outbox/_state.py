"""What every role of the outbox shares: the connections, the writer and its in-memory
mirror, the settings, and what the outbox knows about itself (epoch, re-read mark,
budget state). `Outbox` sets these when it opens; each role reads them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from agent._seal import Sealer
from agent.config import OutboxSettings
from contract import Limits

from ._db import Recovery
from ._writer import GroupWriter

__all__ = ["Mirror", "State"]


@dataclasses.dataclass(slots=True)
class Mirror:
    """What the writer keeps in memory beside the database; rolled back with it."""

    next_seq: int = 1
    unacked_rows: int = 0
    unacked_bytes: int = 0
    # No row below this seq is pending: `take` starts its scan here instead of walking past
    # the rows in flight. Whatever puts a row back to pending lowers it.
    pending_from: int = 0
    # False once `take` found nothing more to send and nothing has been added or put back
    # since: an idle agent then asks the database nothing every time it looks.
    maybe_pending: bool = True

    def snapshot(self) -> object:
        return (
            self.next_seq,
            self.unacked_rows,
            self.unacked_bytes,
            self.pending_from,
            self.maybe_pending,
        )

    def restore(self, snapshot: object) -> None:
        (
            self.next_seq,
            self.unacked_rows,
            self.unacked_bytes,
            self.pending_from,
            self.maybe_pending,
        ) = snapshot  # type: ignore[misc]

    def pending_again(self, lowest: int) -> None:
        """Rows from `lowest` on may be pending again."""
        self.pending_from = min(self.pending_from, lowest)
        self.maybe_pending = True


class State:
    """The attributes of an open outbox, declared once for all its roles."""

    _budget: str
    _db: aiosqlite.Connection
    _free_disk: int | None
    _mirror: Mirror
    _oldest_unacked: float | None
    _reader: aiosqlite.Connection
    _recovered_note: str | None
    _sealer: Sealer
    _waiting: tuple[int, int]
    _writer: GroupWriter
    created_at: str | None
    epoch: str
    first_seq: int
    floor_pending: bool
    last_ack_at: datetime | None
    limits: Limits  # the relay's: a record over them is committed as its refusal instead
    on_new_records: Callable[[], None] | None
    path: Path
    recovery: Recovery | None
    reread: dict[str, Any] | None
    settings: OutboxSettings
