"""A sink that keeps what it is given, and small helpers for the watcher tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, SourceSettings
from agent.parsers import Parsed
from agent.sources import IngestFile, IngestOutcome, SourceWatcher

STORE = "0042"
HEADER = "sku,location,qty,counted_at\n"


def counts(*skus: str | int, qty: int = 3) -> str:
    """A valid inventory count export, one row per SKU."""
    return HEADER + "".join(f"{sku},FLOOR,{qty},2024-03-15T21:30:00\n" for sku in skus)


class FakeSink:
    """An in-memory FileSink: records parsed items, can refuse intake, can fail once."""

    def __init__(self) -> None:
        self.files: list[IngestFile] = []
        self.records: list[Parsed] = []
        self.calls = 0  # ingest calls, refused and failed ones included
        self.open = True
        self.fail_next: BaseException | None = None
        self.delay = 0.0  # seconds each ingest takes, to catch a watcher mid-file

    async def is_ingested(self, sha256: str) -> bool:
        return any(f.sha256 == sha256 for f in self.files)

    async def ingest(self, file: IngestFile, items: Iterator[Parsed]) -> IngestOutcome:
        self.calls += 1
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        if self.delay:
            await asyncio.sleep(self.delay)
        parsed = await asyncio.to_thread(list, items)  # a ParseError leaves nothing behind
        self.files.append(file)
        self.records.extend(parsed)
        return IngestOutcome(len(parsed), 0, 0)

    def accepting(self) -> bool:
        return self.open

    def names(self) -> list[str]:
        return [f.name for f in self.files]


def make_config(tmp_path: Path, **source: Any) -> AgentConfig:
    settings: dict[str, Any] = {"format": "inventory", "settle_seconds": 0.1, **source}
    return AgentConfig(
        store=STORE,
        data_dir=tmp_path / "data",
        timezone="Europe/Berlin",
        sources=[SourceSettings(name="pos", path=tmp_path / "pos", **settings)],
    )


async def until(check: Callable[[], object], timeout: float = 8.0) -> None:
    """Poll `check` until it is truthy; fail at the deadline."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"not met within {timeout}s")
        await asyncio.sleep(0.02)


def archived(tmp_path: Path) -> list[str]:
    """Archived files as `<day>/<name>`."""
    root = tmp_path / "data" / "archive"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def today(config: AgentConfig | None = None) -> str:
    """The archive's day folder now, in the store's time zone (of `make_config` unless
    another config is given): near midnight UTC it is not the same day everywhere."""
    zone = (config or make_config(Path("x"))).zone
    return datetime.now(zone).date().isoformat()


StartWatcher = Callable[..., Awaitable[SourceWatcher]]
