"""Scheduled work of the agent (heartbeat, purge, end of day), on APScheduler 3.

The scheduler is started inside the running event loop, in the store's time zone,
so "04:00" means four in the morning at the store whatever the PC's zone is.
A job never overlaps itself and a missed run is run once, not many times.
"""

from __future__ import annotations

import asyncio
import logging
import zoneinfo
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class Scheduler:
    """A thin face over AsyncIOScheduler: interval and daily jobs, errors logged not raised."""

    def __init__(self, zone: zoneinfo.ZoneInfo) -> None:
        self.zone = zone
        self._scheduler: AsyncIOScheduler | None = None
        self._pending: list[tuple[str, object, Job]] = []

    def every(self, name: str, seconds: float, job: Job) -> None:
        """Run `job` every `seconds`."""
        self._add(name, IntervalTrigger(seconds=seconds, timezone=self.zone), job)

    def daily(self, name: str, at: str, job: Job) -> None:
        """Run `job` every day at local time `at` ("HH:MM") in the store's zone."""
        hour, minute = (int(part) for part in at.split(":"))
        self._add(name, CronTrigger(hour=hour, minute=minute, timezone=self.zone), job)

    def _add(self, name: str, trigger: object, job: Job) -> None:
        if self._scheduler is None:
            self._pending.append((name, trigger, job))
            return
        self._scheduler.add_job(
            _guarded(name, job),
            trigger=trigger,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
            replace_existing=True,
        )

    def start(self) -> None:
        """Start inside the running loop (APScheduler binds to it)."""
        loop = asyncio.get_running_loop()
        self._scheduler = AsyncIOScheduler(event_loop=loop, timezone=self.zone)
        pending, self._pending = self._pending, []
        for name, trigger, job in pending:
            self._add(name, trigger, job)
        self._scheduler.start()
        log.info("Scheduler started.", extra={"jobs": [p[0] for p in pending]})

    def next_run(self, name: str) -> str | None:
        """ISO time of a job's next run, for status."""
        if self._scheduler is None:
            return None
        job = self._scheduler.get_job(name)
        return job.next_run_time.isoformat() if job and job.next_run_time else None

    def shutdown(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None


def _guarded(name: str, job: Job) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # a failing job is logged and runs again next time
            log.exception("Scheduled job failed.", extra={"job": name})

    return run
