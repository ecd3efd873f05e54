"""Real temp folders and a watcher started on them, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.sources import SourceWatcher

from .fakes import FakeSink, StartWatcher, make_config


@pytest.fixture(autouse=True)
def quick_move_pairing(monkeypatch: pytest.MonkeyPatch) -> None:
    """inotify holds a file moved out of the folder (our archiving) for 0.5 s to pair it
    with a move in, and stopping waits for that; in tests every pair is microseconds apart."""
    try:
        from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
    except ImportError:  # not Linux
        return
    monkeypatch.setattr(InotifyMoveEventGrouper, "delay", 0.05)


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "pos"
    path.mkdir()
    return path


@pytest.fixture
async def start(tmp_path: Path, sink: FakeSink) -> AsyncIterator[StartWatcher]:
    """`await start(**source_settings)`: a running watcher, stopped after the test."""
    running: list[SourceWatcher] = []

    async def run(**source: Any) -> SourceWatcher:
        config = make_config(tmp_path, **source)
        watcher = SourceWatcher(config.sources[0], config, sink, config_file="/etc/tb.toml")
        await watcher.start()
        running.append(watcher)
        return watcher

    yield run
    for watcher in running:
        await watcher.stop()
