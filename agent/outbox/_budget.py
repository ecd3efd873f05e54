"""The budget role of the outbox: how much it holds unacknowledged, whether it still
accepts files, and its figures for status. It never drops a record to make room."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from datetime import date, datetime, timedelta, tzinfo

from ._state import State

__all__ = ["Budget", "OutboxStats"]

log = logging.getLogger("tillbridge.agent.outbox")


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    sent: int
    acked: int
    rejected: int
    unacked_bytes: int
    oldest_unacked_seconds: float | None
    last_seq: int
    last_ack_at: datetime | None
    files_ingested: int
    budget: str
    free_disk_bytes: int | None
    recovered: str | None  # a plain sentence when the database was rebuilt after damage


class Budget(State):
    """The outbox's budget: what it holds unacknowledged and whether it accepts files."""

    def _over_budget(self) -> bool:
        m, s = self._mirror, self.settings
        return m.unacked_rows > s.max_rows or m.unacked_bytes > s.max_bytes

    def _committed(self, inserted: int) -> None:
        self._check_budget()
        if inserted and self.on_new_records is not None:
            self.on_new_records()

    def accepting(self) -> bool:
        """False while a budget limit is reached: the watcher leaves files in the POS folder."""
        return self._budget == "ok"

    @property
    def budget(self) -> str:
        return self._budget

    def _check_budget(self) -> None:
        s = self.settings
        m = self._mirror
        problem = None
        rows, size = self._waiting
        if m.unacked_rows and (
            (rows and m.unacked_rows + rows > s.max_rows)
            or (size and m.unacked_bytes + size > s.max_bytes)
        ):
            problem = f"blocked: buffer full (a file of {rows}+ records waits for room)"
        elif m.unacked_rows >= s.max_rows:
            problem = f"blocked: buffer full ({m.unacked_rows} unacknowledged records)"
        elif m.unacked_bytes >= s.max_bytes:
            problem = f"blocked: buffer full ({m.unacked_bytes} bytes unacknowledged)"
        elif (
            self._oldest_unacked is not None
            and time.time() - self._oldest_unacked >= s.max_age_days * 86400
        ):
            problem = "blocked: buffer full (oldest unacknowledged record is too old)"
        elif self._free_disk is not None and self._free_disk < s.min_free_disk_mb * 1024 * 1024:
            problem = f"blocked: disk low ({self._free_disk // (1024 * 1024)} MB free)"
        state = problem or "ok"
        if state.split(" (")[0] != self._budget.split(" (")[0]:  # log a change of state only
            if problem:
                log.warning(
                    "Intake paused: the outbox budget is reached. Files wait in the POS folder.",
                    extra={"budget": state},
                )
            else:
                log.info("Intake resumed: the outbox is below its budget.")
        self._budget = state

    def archive_needed_from(self, zone: tzinfo) -> date | None:
        """The first archive day the outbox may still need, or None when it needs none: a
        pending re-read needs every day from its mark's `since` (all of them without one),
        and the day before the oldest record central has not acknowledged is kept too
        (should this outbox be damaged, a re-read would read it)."""
        needed: list[date] = []
        if self.reread is not None:
            since = self.reread.get("since")
            needed.append(date.fromisoformat(since) if since else date.min)
        if self._oldest_unacked is not None:
            oldest = datetime.fromtimestamp(self._oldest_unacked, zone).date()
            needed.append(oldest - timedelta(days=1))
        return min(needed) if needed else None

    async def refresh_budget(self) -> str:
        """Re-read age and free disk (counts are kept exact in memory), then re-check."""
        async with self._reader.execute(
            "SELECT min(created_at) FROM records WHERE state != 'acked'"
        ) as cur:
            row = await cur.fetchone()
        self._oldest_unacked = float(row[0]) if row and row[0] is not None else None
        try:
            self._free_disk = shutil.disk_usage(self.path.parent).free
        except OSError:
            self._free_disk = None
        self._check_budget()
        return self._budget

    async def stats(self) -> OutboxStats:
        async with self._reader.execute(
            "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'sent'), 0), "
            "coalesce(sum(state = 'acked'), 0), coalesce(sum(rejected IS NOT NULL), 0), "
            "min(CASE WHEN state != 'acked' THEN created_at END) FROM records"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        async with self._reader.execute("SELECT count(*) FROM files") as cur:
            files = await cur.fetchone()
        oldest = float(row[4]) if row[4] is not None else None
        self._oldest_unacked = oldest
        return OutboxStats(
            pending=int(row[0]),
            sent=int(row[1]),
            acked=int(row[2]),
            rejected=int(row[3]),
            unacked_bytes=self._mirror.unacked_bytes,
            oldest_unacked_seconds=(time.time() - oldest) if oldest is not None else None,
            last_seq=self._mirror.next_seq - 1,
            last_ack_at=self.last_ack_at,
            files_ingested=int(files[0]) if files else 0,
            budget=self._budget,
            free_disk_bytes=self._free_disk,
            recovered=self._recovered_note,
        )

    @property
    def unacked_rows(self) -> int:
        return self._mirror.unacked_rows

    @property
    def unacked_bytes(self) -> int:
        return self._mirror.unacked_bytes

    @property
    def last_seq(self) -> int:
        return self._mirror.next_seq - 1
