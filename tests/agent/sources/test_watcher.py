"""The folder watcher on real folders with a real watchdog observer: when a file counts as
complete, which files are taken and in what order, and what is archived or left alone."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from agent.config import AgentConfig, SourceSettings
from agent.sources import BudgetReached, SourceWatcher, Watchers, read_archived_file

from .fakes import STORE, FakeSink, StartWatcher, archived, counts, make_config, today, until


async def test_a_file_written_as_tmp_then_renamed_is_taken_once_at_once(
    start: StartWatcher, folder: Path, sink: FakeSink, tmp_path: Path
) -> None:
    # A long settle window: only the rename can make the file count as complete this soon.
    watcher = await start(settle_seconds=30)
    tmp = folder / "counts.csv.tmp"
    with tmp.open("w") as handle:
        handle.write(counts(1))
        handle.flush()
        await asyncio.sleep(0.2)
        handle.write(counts(2)[len(counts()) :])
    tmp.rename(folder / "counts.csv")

    await until(lambda: sink.names() == ["counts.csv"])
    await until(lambda: watcher.stats.pending == 0)
    await asyncio.sleep(0.3)  # later events of the same file bring nothing more
    assert sink.names() == ["counts.csv"]
    assert [r.sku for r in sink.records] == ["1", "2"]  # type: ignore[union-attr]
    assert archived(tmp_path) == [f"{today()}/counts.csv"]
    assert list(folder.iterdir()) == []
    assert watcher.stats.ingested == 1
    assert watcher.stats.records == 2
    assert watcher.stats.mode == "events"


async def test_a_file_being_appended_is_taken_only_after_it_settles(
    start: StartWatcher, folder: Path, sink: FakeSink
) -> None:
    watcher = await start(settle_seconds=0.5)
    path = folder / "counts.csv"
    with path.open("w") as handle:
        handle.write(counts())
        handle.flush()
        for n in range(8):  # the POS appends a row every 0.1 s, well inside the window
            await asyncio.sleep(0.1)
            handle.write(f"{n},FLOOR,1,2024-03-15T21:30:00\n")
            handle.flush()
            assert sink.calls == 0
    written = time.monotonic()

    await until(lambda: len(sink.files) == 1)
    assert time.monotonic() - written >= 0.45
    assert len(sink.records) == 8  # the whole file, not a prefix
    # The file leaves the pending count once it is archived, just after the sink took it.
    await until(lambda: watcher.stats.pending == 0)


async def test_a_ready_marker_is_waited_for_and_removed_after_archiving(
    start: StartWatcher, folder: Path, sink: FakeSink, tmp_path: Path
) -> None:
    watcher = await start(require_ready_marker=True, settle_seconds=0.05)
    (folder / "a.csv").write_text(counts(1))
    await until(lambda: watcher.stats.pending == 1)
    await asyncio.sleep(0.5)  # ten settle windows: still not complete without its marker
    assert sink.calls == 0

    (folder / "a.csv.ready").touch()
    await until(lambda: sink.names() == ["a.csv"])
    await until(lambda: not (folder / "a.csv.ready").exists())
    assert archived(tmp_path) == [f"{today()}/a.csv"]
    assert list(folder.iterdir()) == []


async def test_a_ready_marker_makes_a_file_complete_without_waiting(
    start: StartWatcher, folder: Path, sink: FakeSink
) -> None:
    await start(settle_seconds=30)
    (folder / "a.csv").write_text(counts(1))
    (folder / "a.csv.ready").touch()
    await until(lambda: sink.names() == ["a.csv"])
    await until(lambda: not (folder / "a.csv.ready").exists())


async def test_files_present_at_start_are_found_and_taken_oldest_first(
    start: StartWatcher, folder: Path, sink: FakeSink
) -> None:
    stamps = {"c.csv": 10, "a.csv": 20, "b.csv": 20, "d.csv": 5}  # b and a: same age, by name
    for n, (name, age) in enumerate(stamps.items()):
        path = folder / name
        path.write_text(counts(n))
        os.utime(path, (1_700_000_000 + age, 1_700_000_000 + age))
    (folder / "deep" / "er").mkdir(parents=True)
    (folder / "deep" / "er" / "e.csv").write_text(counts(9))
    os.utime(folder / "deep" / "er" / "e.csv", (1_700_000_100, 1_700_000_100))

    watcher = await start(rescan_seconds=600)
    await until(lambda: len(sink.files) == 5)
    assert sink.names() == ["d.csv", "c.csv", "a.csv", "b.csv", "e.csv"]
    expected = hashlib.sha256(counts(3).encode()).hexdigest()
    assert sink.files[0].sha256 == expected
    assert sink.files[0].size == len(counts(3))
    assert sink.files[0].source == "pos"
    assert sink.files[0].path == str(folder / "d.csv")
    assert watcher.stats.ingested == 5


async def test_a_polling_observer_finds_files_on_a_share(
    start: StartWatcher, folder: Path, sink: FakeSink
) -> None:
    # The rescan is far away: only the polling observer can find the new file in time.
    watcher = await start(poll=True, poll_interval=0.1, rescan_seconds=600, settle_seconds=0.1)
    assert watcher.stats.mode == "polling"
    assert watcher.stats.watching
    (folder / "sub").mkdir()
    (folder / "sub" / "b.csv").write_text(counts(2))
    tmp = folder / "c.csv.part"
    tmp.write_text(counts(3))
    tmp.rename(folder / "c.csv")
    await until(lambda: sorted(sink.names()) == ["b.csv", "c.csv"])


def test_unc_paths_are_polled() -> None:
    share = SourceSettings(name="x", path=Path("//nas/pos/out"))
    assert share.polled
    local = SourceSettings(name="x", path=Path("/srv/pos/out"))
    assert not local.polled


async def test_excluded_and_unmatched_files_are_left_alone(
    start: StartWatcher, folder: Path, sink: FakeSink
) -> None:
    watcher = await start(include=["**/*.csv"], exclude=["**/skip_*", "**/*.tmp"])
    (folder / "sub").mkdir()
    (folder / ".sync").mkdir()
    leave = {
        "skip_me.csv": counts(3),
        "notes.txt": "not a count",
        "half.csv.tmp": counts(4),
        ".sync/hidden.csv": counts(5),
    }
    for name, text in leave.items():
        (folder / name).write_text(text)
    (folder / "top.csv").write_text(counts(1))
    (folder / "sub" / "nested.csv").write_text(counts(2))

    await until(lambda: sorted(sink.names()) == ["nested.csv", "top.csv"])
    await watcher.rescan()
    await asyncio.sleep(0.3)
    assert sorted(sink.names()) == ["nested.csv", "top.csv"]
    assert all((folder / name).exists() for name in leave)
    assert watcher.stats.pending == 0  # excluded files are not even pending


async def test_the_same_content_again_is_archived_without_ingesting(
    start: StartWatcher, folder: Path, sink: FakeSink, tmp_path: Path
) -> None:
    watcher = await start()
    (folder / "a.csv").write_text(counts(1))
    await until(lambda: watcher.stats.ingested == 1)
    (folder / "again.csv").write_text(counts(1))  # the POS exported the same file again

    await until(lambda: watcher.stats.duplicates == 1)
    assert sink.calls == 1
    assert archived(tmp_path) == [f"{today()}/a.csv", f"{today()}/again.csv"]
    assert list(folder.iterdir()) == []


async def test_archive_names_never_clash(
    start: StartWatcher, folder: Path, sink: FakeSink, tmp_path: Path
) -> None:
    day = tmp_path / "data" / "archive" / today()
    day.mkdir(parents=True)
    (day / "a.csv").write_text("archived yesterday evening")
    (day / "a-2.csv").write_text("and again")
    watcher = await start()
    (folder / "a.csv").write_text(counts(1))
    await until(lambda: watcher.stats.ingested == 1 and not (folder / "a.csv").exists())

    assert (day / "a.csv").read_text() == "archived yesterday evening"
    assert (day / "a-2.csv").read_text() == "and again"
    key_file = tmp_path / "data" / "outbox.key"  # archive_encrypt: sealed with the outbox key
    assert read_archived_file(day / "a-3.csv", key_file) == counts(1).encode()


async def test_back_pressure_holds_files_in_the_folder_and_resumes(
    start: StartWatcher, folder: Path, sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.sources._watch.IDLE_SECONDS", 0.1)
    sink.open = False
    watcher = await start(settle_seconds=0.05)
    for n, name in enumerate(["b.csv", "a.csv", "c.csv"]):
        (folder / name).write_text(counts(n))
        os.utime(folder / name, (1_700_000_000 + n, 1_700_000_000 + n))
    await until(lambda: watcher.stats.pending == 3)
    await until(lambda: watcher.stats.paused)
    await asyncio.sleep(0.5)
    assert sink.calls == 0
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv", "b.csv", "c.csv"]

    sink.open = True
    # A file stays pending until it is archived, a step after the sink has it.
    await until(lambda: len(sink.files) == 3 and watcher.stats.pending == 0)
    assert sink.names() == ["b.csv", "a.csv", "c.csv"]  # oldest first
    assert not watcher.stats.paused


async def test_a_file_the_outbox_has_no_room_for_waits_without_an_error(
    start: StartWatcher, folder: Path, sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.sources._watch.IDLE_SECONDS", 0.1)
    watcher = await start(settle_seconds=0.05)
    # The sink finds the file over its budget: it rolls back, says so and closes intake.
    sink.fail_next = BudgetReached("a.csv needs room for at least 1 records", 1)
    sink.accepting = lambda: sink.calls == 0 or bool(sink.files)  # type: ignore[method-assign]
    (folder / "a.csv").write_text(counts(1))
    await until(lambda: sink.calls == 1)
    await asyncio.sleep(0.5)
    assert (folder / "a.csv").exists()  # it waits in the folder
    assert sink.calls == 1  # not taken again while there is no room
    assert watcher.stats.paused
    assert watcher.stats.last_error is None  # nothing is wrong with the file
    sink.accepting = lambda: True  # type: ignore[method-assign]
    await until(lambda: len(sink.files) == 1 and watcher.stats.pending == 0)
    assert not (folder / "a.csv").exists()


async def test_back_pressure_mid_queue_stops_taking_at_once(
    start: StartWatcher, folder: Path, sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.sources._watch.IDLE_SECONDS", 0.1)
    for n in range(4):
        (folder / f"{n}.csv").write_text(counts(n))
        os.utime(folder / f"{n}.csv", (1_700_000_000 + n, 1_700_000_000 + n))
    original = sink.ingest

    async def fill_up(file, items):  # type: ignore[no-untyped-def]
        outcome = await original(file, items)
        sink.open = len(sink.files) < 2  # the second file fills the budget
        return outcome

    sink.ingest = fill_up  # type: ignore[method-assign]
    watcher = await start()
    await until(lambda: watcher.stats.paused)
    await asyncio.sleep(0.3)
    assert sink.names() == ["0.csv", "1.csv"]
    sink.open = True
    sink.ingest = original  # type: ignore[method-assign]
    await until(lambda: len(sink.files) == 4)


async def test_a_transient_sink_failure_leaves_the_file_and_retries(
    start: StartWatcher,
    folder: Path,
    sink: FakeSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("agent.sources._watch.RETRY_SECONDS", 0.4)
    sink.fail_next = OSError(28, "No space left on device")
    watcher = await start()
    (folder / "a.csv").write_text(counts(1))

    await until(lambda: watcher.stats.retrying == 1)
    assert (folder / "a.csv").exists()  # left where the POS put it
    assert "No space left on device" in (watcher.stats.last_error or "")
    assert watcher.stats.last_error_at is not None
    await until(lambda: sink.names() == ["a.csv"])
    await until(lambda: watcher.stats.retrying == 0)
    assert watcher.stats.quarantined == 0
    assert archived(tmp_path) == [f"{today()}/a.csv"]


async def test_any_other_sink_failure_is_passing_too(
    start: StartWatcher, folder: Path, sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.sources._watch.RETRY_SECONDS", 0.1)
    sink.fail_next = RuntimeError("the outbox is closed")
    watcher = await start()
    (folder / "a.csv").write_text(counts(1))
    await until(lambda: sink.names() == ["a.csv"])
    assert watcher.stats.quarantined == 0
    assert "the outbox is closed" in (watcher.stats.last_error or "")


async def test_a_locked_file_is_tried_again_not_quarantined(
    start: StartWatcher, folder: Path, sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.sources._watch as watch
    from agent.sources._files import hash_file as real

    monkeypatch.setattr(watch, "RETRY_SECONDS", 0.1)
    attempts: list[Path] = []

    def locked_twice(path: Path) -> tuple[str, int, int]:
        attempts.append(path)
        if len(attempts) <= 2:  # what Windows says while the POS holds the file
            raise PermissionError(13, "The process cannot access the file")
        return real(path)

    monkeypatch.setattr(watch, "hash_file", locked_twice)
    watcher = await start()
    (folder / "a.csv").write_text(counts(1))
    await until(lambda: sink.names() == ["a.csv"])
    assert len(attempts) == 3
    assert watcher.stats.quarantined == 0


async def test_a_failure_inside_the_parser_refuses_the_file(
    start: StartWatcher,
    folder: Path,
    sink: FakeSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(stream, fmt, *, context):  # type: ignore[no-untyped-def]
        yield from ()
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("agent.sources._watch.parse_stream", broken)
    watcher = await start()
    (folder / "a.csv").write_text(counts(1))
    await until(lambda: watcher.stats.quarantined == 1)
    note = (tmp_path / "data" / "quarantine" / "a.csv.error.txt").read_text()
    assert "ZeroDivisionError" in note
    assert sink.files == []


async def test_a_failed_read_of_the_file_is_passing(
    start: StartWatcher, folder: Path, sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.sources._watch as watch
    from agent.parsers import parse_stream as real

    monkeypatch.setattr(watch, "RETRY_SECONDS", 0.1)
    failures = [OSError(5, "Input/output error")]

    def flaky(stream, fmt, *, context):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        yield from real(stream, fmt, context=context)

    monkeypatch.setattr(watch, "parse_stream", flaky)
    watcher = await start()
    (folder / "a.csv").write_text(counts(1))
    await until(lambda: sink.names() == ["a.csv"])
    assert watcher.stats.quarantined == 0
    assert "Input/output error" in (watcher.stats.last_error or "")


async def test_a_file_for_another_store_is_refused(
    start: StartWatcher, folder: Path, sink: FakeSink, tmp_path: Path
) -> None:
    watcher = await start()
    text = "store,sku,location,qty,counted_at\n0099,1,FLOOR,3,2024-03-15T21:30:00\n"
    (folder / "other.csv").write_text(text)
    await until(lambda: watcher.stats.quarantined == 1)
    note = (tmp_path / "data" / "quarantine" / "other.csv.error.txt").read_text()
    assert f"this agent sends for store '{STORE}'" in note
    assert sink.files == []


async def test_logs_are_structured_and_carry_no_content(
    start: StartWatcher, folder: Path, sink: FakeSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tillbridge.agent.sources")
    watcher = await start()
    (folder / "a.csv").write_text(counts("SECRET-SKU-777"))
    await until(lambda: watcher.stats.ingested == 1)
    await until(lambda: any(r.getMessage() == "File ingested." for r in caplog.records))
    ingested = next(r for r in caplog.records if r.getMessage() == "File ingested.")
    assert ingested.__dict__["source"] == "pos"
    assert ingested.__dict__["file"] == "a.csv"
    assert ingested.__dict__["sha256"] == sink.files[0].sha256
    assert ingested.__dict__["records"] == 1
    assert all(r.name == "tillbridge.agent.sources" for r in caplog.records)
    assert "SECRET-SKU-777" not in caplog.text


async def test_stop_finishes_the_file_in_hand_and_lets_go_of_the_folder(
    start: StartWatcher, folder: Path, sink: FakeSink, tmp_path: Path
) -> None:
    sink.delay = 0.5
    watcher = await start()
    (folder / "a.csv").write_text(counts(1))
    await until(lambda: sink.calls == 1)  # the sink has the file in hand

    await asyncio.wait_for(watcher.stop(), 5)
    assert sink.names() == ["a.csv"]
    assert archived(tmp_path) == [f"{today()}/a.csv"]  # finished, not abandoned
    assert not watcher.stats.watching
    assert not [t for t in threading.enumerate() if type(t).__module__.startswith("watchdog")]

    (folder / "b.csv").write_text(counts(2))
    await asyncio.sleep(0.4)
    assert sink.names() == ["a.csv"]  # stopped means stopped
    await watcher.stop()  # and a second stop is harmless


async def test_a_missing_folder_is_watched_once_it_appears(tmp_path: Path, sink: FakeSink) -> None:
    config = make_config(tmp_path)
    watcher = SourceWatcher(config.sources[0], config, sink)
    await watcher.start()
    try:
        assert not watcher.stats.watching
        missing = "missing: it does not exist, or is not reachable"
        assert watcher.stats.last_error == f"cannot read {tmp_path / 'pos'}: {missing}"
        assert watcher.stats.unreadable_now == {str(tmp_path / "pos"): missing}
        (tmp_path / "pos").mkdir()
        (tmp_path / "pos" / "a.csv").write_text(counts(1))
        await watcher.rescan()  # the daemon's periodic rescan, or our own
        assert watcher.stats.watching
        assert watcher.stats.unreadable_now == {}
        assert watcher.stats.unreadable == 1
        await until(lambda: sink.names() == ["a.csv"])
        (tmp_path / "pos" / "b.csv").write_text(counts(2))  # now by event
        await until(lambda: sink.names() == ["a.csv", "b.csv"])
    finally:
        await watcher.stop()


async def test_the_periodic_rescan_runs_by_itself(
    start: StartWatcher, folder: Path, sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No folder events at all: only the watcher's own rescan can find the file.
    import agent.sources._watch as watch

    def no_events(*args: object, **kwargs: object) -> None:
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watch, "start_observer", no_events)
    watcher = await start(rescan_seconds=0.3)
    assert not watcher.stats.watching
    (folder / "a.csv").write_text(counts(1))
    await until(lambda: sink.names() == ["a.csv"])


@pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")  # inotify's bookkeeping
async def test_our_own_data_folder_inside_the_source_is_never_taken(
    tmp_path: Path, sink: FakeSink
) -> None:
    pos = tmp_path / "pos"
    pos.mkdir()
    config = AgentConfig(
        store=STORE,
        data_dir=pos / "tillbridge",
        sources=[SourceSettings(name="pos", path=pos, format="inventory", settle_seconds=0.05)],
    )
    watcher = SourceWatcher(config.sources[0], config, sink)
    await watcher.start()
    try:
        (pos / "a.csv").write_text(counts(1))
        await until(lambda: watcher.stats.ingested == 1)
        await watcher.rescan()
        await asyncio.sleep(0.3)
        assert sink.names() == ["a.csv"]
        assert watcher.stats.pending == 0
        assert watcher.stats.duplicates == 0
    finally:
        await watcher.stop()


async def test_several_sources_run_side_by_side(tmp_path: Path, sink: FakeSink) -> None:
    folders = {name: tmp_path / name for name in ("front", "back", "share")}
    for path in folders.values():
        path.mkdir()
    config = AgentConfig(
        store=STORE,
        data_dir=tmp_path / "data",
        sources=[
            SourceSettings(
                name=name,
                path=path,
                format="inventory",
                settle_seconds=0.05,
                poll=name == "share",
                poll_interval=0.1,
            )
            for name, path in folders.items()
        ],
    )
    watchers = Watchers(config, sink, config_file="/etc/tb.toml")
    await watchers.start()
    try:
        for n, path in enumerate(folders.values()):
            (path / "same_name.csv").write_text(counts(n))
        await until(lambda: len(sink.files) == 3)
        await until(lambda: sum(s.ingested for s in watchers.stats().values()) == 3)
        stats = watchers.stats()
        assert sorted(stats) == ["back", "front", "share"]
        assert stats["share"].mode == "polling"
        assert {f.source for f in sink.files} == {"front", "back", "share"}
        day = tmp_path / "data" / "archive" / today(config)
        assert sorted(p.name for p in day.iterdir()) == [
            "same_name-2.csv",
            "same_name-3.csv",
            "same_name.csv",
        ]
        stats["front"].ingested = 99  # a snapshot, not the live counters
        assert watchers.stats()["front"].ingested == 1
        await watchers.rescan()
    finally:
        await watchers.stop()
