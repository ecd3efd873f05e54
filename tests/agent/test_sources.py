"""The folder watcher with real folders and a real watchdog observer, against a sink that
records what it is given: completeness rules, globs, duplicates, retries, archive names."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, SourceSettings
from agent.parsers import Parsed
from agent.sources import IngestFile, IngestOutcome, SourceWatcher, matches
from tests.support.records import wait_for

CSV = "sku,location,qty,counted_at\n{sku},FLOOR,3,2024-03-15T21:30:00\n"


class FakeSink:
    """A FileSink that keeps what it commits; can pause intake and fail once."""

    def __init__(self) -> None:
        self.files: list[IngestFile] = []
        self.records: list[Parsed] = []
        self.open = True
        self.fail_next = False

    async def is_ingested(self, sha256: str) -> bool:
        return any(f.sha256 == sha256 for f in self.files)

    async def ingest(self, file: IngestFile, items: Iterator[Parsed]) -> IngestOutcome:
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk I/O error")
        parsed = await asyncio.to_thread(list, items)  # raises ParseError before anything is kept
        self.files.append(file)
        self.records.extend(parsed)
        return IngestOutcome(len(parsed), 0, 0)

    def accepting(self) -> bool:
        return self.open


def make_config(tmp_path: Path, **source: Any) -> AgentConfig:
    settings = {"settle_seconds": 0.3, "rescan_seconds": 60, **source}
    return AgentConfig(
        store="0042",
        data_dir=tmp_path / "data",
        sources=[SourceSettings(name="pos", path=tmp_path / "pos", format="inventory", **settings)],
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "pos").mkdir()
    return tmp_path / "pos"


async def start(tmp_path: Path, sink: FakeSink, **source: Any) -> SourceWatcher:
    config = make_config(tmp_path, **source)
    watcher = SourceWatcher(config.sources[0], config, sink)
    await watcher.start()
    return watcher


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


def archived(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "data" / "archive").rglob("*") if p.is_file())


async def test_a_file_still_being_written_waits_for_the_settle_window(
    tmp_path: Path, folder: Path, sink: FakeSink
) -> None:
    watcher = await start(tmp_path, sink, settle_seconds=1.0)
    try:
        path = folder / "counts.csv"
        with path.open("w") as handle:
            handle.write("sku,location,qty,counted_at\n")
            handle.flush()
            for n in range(4):  # the POS keeps appending for a while
                await asyncio.sleep(0.3)
                handle.write(f"{n},FLOOR,1,2024-03-15T21:30:00\n")
                handle.flush()
                assert sink.files == []
        started = time.monotonic()

        async def taken() -> bool:
            return len(sink.files) == 1

        await wait_for(taken, timeout=10)
        assert time.monotonic() - started >= 0.8
        assert len(sink.records) == 4  # the whole file, not a prefix
    finally:
        await watcher.stop()


async def test_a_ready_marker_is_required_when_configured(
    tmp_path: Path, folder: Path, sink: FakeSink
) -> None:
    watcher = await start(tmp_path, sink, require_ready_marker=True, settle_seconds=0.05)
    try:
        (folder / "a.csv").write_text(CSV.format(sku=1))
        await asyncio.sleep(0.6)
        assert sink.files == []
        (folder / "a.csv.ready").touch()

        async def taken() -> bool:
            return len(sink.files) == 1

        await wait_for(taken, timeout=10)
        assert not (folder / "a.csv.ready").exists()  # the marker goes with the file
        assert archived(tmp_path) == ["a.csv"]
    finally:
        await watcher.stop()


async def test_polling_mode_and_excluded_names(
    tmp_path: Path, folder: Path, sink: FakeSink
) -> None:
    watcher = await start(
        tmp_path,
        sink,
        poll=True,
        poll_interval=0.1,
        settle_seconds=0.05,
        include=["**/*.csv"],
        exclude=["**/skip_*"],
    )
    try:
        (folder / "sub").mkdir()
        (folder / "sub" / "b.csv").write_text(CSV.format(sku=2))
        (folder / "skip_me.csv").write_text(CSV.format(sku=3))
        (folder / "notes.txt").write_text("not a count")

        async def taken() -> bool:
            return len(sink.files) == 1

        await wait_for(taken, timeout=10)
        await asyncio.sleep(0.5)
        assert [f.name for f in sink.files] == ["b.csv"]
        assert (folder / "skip_me.csv").exists()
        assert (folder / "notes.txt").exists()
    finally:
        await watcher.stop()


async def test_the_same_content_again_is_archived_without_sending(
    tmp_path: Path, folder: Path, sink: FakeSink
) -> None:
    watcher = await start(tmp_path, sink, settle_seconds=0.05)
    try:
        (folder / "a.csv").write_text(CSV.format(sku=1))

        async def first() -> bool:
            return len(sink.files) == 1

        await wait_for(first, timeout=10)
        (folder / "a.csv").write_text(CSV.format(sku=1))  # the POS exports it again

        async def second() -> bool:
            return watcher.stats.duplicates == 1

        await wait_for(second, timeout=10)
        assert len(sink.files) == 1
        assert archived(tmp_path) == ["a-2.csv", "a.csv"]  # never overwritten
    finally:
        await watcher.stop()


async def test_a_passing_sink_failure_leaves_the_file_and_retries(
    tmp_path: Path, folder: Path, sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.sources._watch.RETRY_SECONDS", 0.2)
    sink.fail_next = True
    watcher = await start(tmp_path, sink, settle_seconds=0.05)
    try:
        (folder / "a.csv").write_text(CSV.format(sku=1))

        async def retried() -> bool:
            return len(sink.files) == 1

        await wait_for(retried, timeout=10)
        assert watcher.stats.quarantined == 0
        assert "disk I/O error" in (watcher.stats.last_error or "")
    finally:
        await watcher.stop()


async def test_intake_waits_while_the_sink_is_full(
    tmp_path: Path, folder: Path, sink: FakeSink
) -> None:
    sink.open = False
    watcher = await start(tmp_path, sink, settle_seconds=0.05)
    try:
        (folder / "a.csv").write_text(CSV.format(sku=1))
        await asyncio.sleep(1.2)
        assert sink.files == []
        assert watcher.stats.paused
        assert watcher.stats.pending == 1
        sink.open = True

        async def resumed() -> bool:
            return len(sink.files) == 1

        await wait_for(resumed, timeout=10)
        assert not watcher.stats.paused
    finally:
        await watcher.stop()


async def test_files_present_at_start_are_taken_oldest_first(
    tmp_path: Path, folder: Path, sink: FakeSink
) -> None:
    for n, name in enumerate(["c.csv", "a.csv", "b.csv"]):
        path = folder / name
        path.write_text(CSV.format(sku=n))
        os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n))
    watcher = await start(tmp_path, sink, settle_seconds=0.05)
    try:

        async def all_taken() -> bool:
            return len(sink.files) == 3

        await wait_for(all_taken, timeout=10)
        assert [f.name for f in sink.files] == ["c.csv", "a.csv", "b.csv"]
        assert sink.files[0].sha256 == hashlib.sha256(CSV.format(sku=0).encode()).hexdigest()
    finally:
        await watcher.stop()


@pytest.mark.parametrize(
    ("path", "include", "exclude", "expected"),
    [
        ("/pos/a.xml", ["**/*.xml"], [], True),
        ("/pos/sub/deep/a.xml", ["**/*.xml"], [], True),
        ("/pos/a.xml.tmp", ["**/*"], ["**/*.tmp"], False),
        ("/pos/a.XML", ["**/*.xml"], [], False),
        ("/pos/out/a.xml", ["/pos/out/*.xml"], [], True),
        ("/pos/out/sub/a.xml", ["/pos/out/*.xml"], [], False),
        ("/pos/~lock.csv", ["**/*"], ["**/~*"], False),
        ("/pos/day_1.csv", ["**/day_[0-9].csv"], [], True),
    ],
)
def test_full_path_globs(path: str, include: list[str], exclude: list[str], expected: bool) -> None:
    assert matches(Path(path), Path("/pos"), include, exclude) is expected
