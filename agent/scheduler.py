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
        self._running: set[asyncio.Task[None]] = set()

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
            _guarded(name, job, self._running),
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
        """Run no more jobs; those running go on (`stop` waits for them)."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Run no more jobs and let those running finish, cancelling them after `grace_seconds`
        (a heartbeat to a broker that went away): nothing is left for the loop to cancel
        at exit, where APScheduler would log the cancellation as a failed job."""
        self.shutdown()
        running = set(self._running)
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=grace_seconds)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)


def _guarded(
    name: str, job: Job, running: set[asyncio.Task[None]]
) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        task = asyncio.current_task()
        if task is not None:
            running.add(task)
        try:
            await job()
        except asyncio.CancelledError:
            # Only a stop cancels a job; it runs again at the next start.
            log.debug("Scheduled job cancelled by the stop.", extra={"job": name})
        except Exception:  # a failing job is logged and runs again next time
            log.exception("Scheduled job failed.", extra={"job": name})
        finally:
            if task is not None:
                running.discard(task)

    return run
