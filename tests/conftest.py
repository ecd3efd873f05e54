"""Shared fixtures: a real Mosquitto on a free loopback port, throwaway PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto

ROOT = Path(__file__).parent.parent


def pytest_sessionstart(session: pytest.Session) -> None:
    """A compiled module is imported instead of its source (setup.py): refuse to test an
    old build of an edited file."""
    stale = [
        str(source.relative_to(ROOT))
        for built in (ROOT / "agent").rglob("*.so")
        if (source := built.with_name(built.name.split(".")[0] + ".py")).exists()
        and source.stat().st_mtime > built.stat().st_mtime
    ]
    if stale:
        pytest.exit(f"compiled before its last edit: {', '.join(stale)}; run `make native`", 2)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running broker of this test's own; tests may stop, kill and restart it."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that set up logging as a daemon does: put back the handlers that were there."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
