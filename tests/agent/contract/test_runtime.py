"""Process plumbing both daemons share: the collector set up for a long-running process,
and a daemon's exit code."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.runtime import GC_THRESHOLD, run_daemon, tune_gc
from common.settings import LoggingSettings


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_the_collector_runs_less_often_and_leaves_the_startup_heap_alone(
    restore_gc: None,
) -> None:
    before = gc.get_freeze_count()
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLD
    assert gc.get_threshold()[0] > 700  # the interpreter's default
    # Modules, classes and schemas loaded so far are left out of every collection.
    assert gc.get_freeze_count() > before + 1000


def test_a_daemon_runs_with_the_tuned_collector_and_says_how_it_ended(
    tmp_path: Path, restore_gc: None, restore_logging: None
) -> None:
    seen: list[tuple[int, int, int]] = []

    async def main(stop: asyncio.Event) -> None:
        seen.append(gc.get_threshold())

    async def failing(stop: asyncio.Event) -> None:
        raise RuntimeError("broken")

    settings, log = LoggingSettings(), tmp_path / "d.log"
    assert run_daemon(main, settings=settings, log_file=log, logger="t", failure="failed") == 0
    assert seen == [GC_THRESHOLD]
    assert run_daemon(failing, settings=settings, log_file=log, logger="t", failure="failed") == 1
    assert "failed" in (tmp_path / "d.log").read_text()
