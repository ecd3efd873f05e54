"""The scheduler runs jobs inside the loop, in the store's zone, and survives failures."""

from __future__ import annotations

import asyncio
import logging
import zoneinfo
from datetime import datetime

from agent.scheduler import Scheduler
from common.logs import configure_logging


async def test_interval_jobs_run_and_a_failing_job_keeps_running() -> None:
    sched = Scheduler(zoneinfo.ZoneInfo("Europe/Berlin"))
    ticks: list[int] = []
    failures: list[int] = []

    async def tick() -> None:
        ticks.append(1)

    async def broken() -> None:
        failures.append(1)
        raise RuntimeError("boom")

    sched.every("tick", 0.05, tick)
    sched.every("broken", 0.05, broken)
    sched.start()
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while (
            len(ticks) < 3 or len(failures) < 3
        ) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
    finally:
        sched.shutdown()
    assert len(ticks) >= 3
    assert len(failures) >= 3


async def test_daily_job_is_timed_in_the_store_zone() -> None:
    zone = zoneinfo.ZoneInfo("Asia/Tokyo")
    sched = Scheduler(zone)

    async def close_day() -> None:
        return None

    sched.daily("end_of_day", "04:00", close_day)
    sched.start()
    try:
        next_run = sched.next_run("end_of_day")
    finally:
        sched.shutdown()
    assert next_run is not None
    when = datetime.fromisoformat(next_run)
    assert (when.hour, when.minute) == (4, 0)
    assert when.utcoffset() == zone.utcoffset(when.replace(tzinfo=None))


def test_library_chatter_stays_below_the_daemons_level(restore_logging: None) -> None:
    configure_logging(level="info", console=False)
    for chatty in ("apscheduler", "aiomqtt", "httpx"):
        assert not logging.getLogger(f"{chatty}.x").isEnabledFor(logging.INFO), chatty
        assert logging.getLogger(f"{chatty}.x").isEnabledFor(logging.WARNING), chatty
    assert logging.getLogger("tillbridge.agent").isEnabledFor(logging.INFO)
    configure_logging(level="debug", console=False)
    assert logging.getLogger("apscheduler.x").isEnabledFor(logging.DEBUG)


async def test_a_stop_while_a_job_runs_logs_no_error(caplog: object) -> None:
    """A heartbeat still waiting on the broker when the agent stops: `stop` lets it
    finish or cancels it, and neither the job nor APScheduler logs an ERROR."""
    import pytest

    assert isinstance(caplog, pytest.LogCaptureFixture)
    caplog.set_level(logging.DEBUG)
    sched = Scheduler(zoneinfo.ZoneInfo("UTC"))
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(60)

    sched.every("heartbeat", 0.05, slow)
    sched.start()
    await asyncio.wait_for(started.wait(), 5)
    await sched.stop(grace_seconds=0.1)
    await asyncio.sleep(0.05)  # APScheduler's done-callback runs on the next turn
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert any(r.getMessage() == "Scheduled job cancelled by the stop." for r in caplog.records)
