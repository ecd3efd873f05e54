"""Files the POS still holds, as Windows treats them (simulated by `tests.agent.windows`):
archive and quarantine by rename only, a file held open is not complete, reads never
block the POS, short names never reach the archive, mapped drives are polled."""

from __future__ import annotations

import asyncio
import errno
import os
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from agent.sources import _share, retry_quarantined
from agent.sources._files import STAGING, archive_file, hash_file, move_to, restore_staged
from agent.sources._intake import open_unchanged
from agent.sources._quarantine import quarantine_file
from tests.agent.windows import WindowsFiles, fake_acl

from .fakes import FakeSink, StartWatcher, archived, counts, today, until


@pytest.fixture
def win(monkeypatch: pytest.MonkeyPatch) -> WindowsFiles:
    files = WindowsFiles(monkeypatch)
    fake_acl(monkeypatch)  # archived files get the agent's ACL: through the fake backend
    return files


def plain_open(path: Path, share: int) -> BinaryIO:
    """CreateFile where no other program holds the file: any share mode opens it."""
    return Path(path).open("rb")


def on_z(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """`folder` is on drive Z: as far as the agent's drive checks can tell."""
    real = os.path.splitdrive

    def splitdrive(p: str) -> tuple[str, str]:
        return ("Z:", p) if str(p).startswith(str(folder)) else real(p)

    monkeypatch.setattr(os.path, "splitdrive", splitdrive)


def everything_below(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_held_file_is_never_copied_into_the_archive(win: WindowsFiles, tmp_path: Path) -> None:
    pos = tmp_path / "pos"
    pos.mkdir()
    held = pos / "t_0001.xml"
    held.write_bytes(b"<POSLog/>" * 1000)
    win.pos_open(held, share=0x1)  # the POS still has it open, sharing read only
    archive = tmp_path / "archive"
    for _ in range(10):  # ten retries of the watcher
        with pytest.raises(PermissionError) as failure:
            archive_file(held, archive, "2024-05-01")
        assert _share.is_sharing_violation(failure.value)
    assert held.read_bytes() == b"<POSLog/>" * 1000
    assert everything_below(archive) == []  # not one copy left behind
    win.pos_close(held)
    target = archive_file(held, archive, "2024-05-01")
    assert everything_below(archive) == ["2024-05-01/t_0001.xml"]
    assert target.read_bytes() == b"<POSLog/>" * 1000
    assert not held.exists()


def test_a_held_file_is_never_copied_into_quarantine(win: WindowsFiles, tmp_path: Path) -> None:
    pos = tmp_path / "pos"
    pos.mkdir()
    held = pos / "bad.xml"
    held.write_bytes(b"<broken")
    win.pos_open(held)
    quarantine = tmp_path / "quarantine"
    for _ in range(3):
        with pytest.raises(PermissionError):
            quarantine_file(
                held,
                quarantine,
                source="pos",
                folder=pos,
                sha256="",
                reason="not XML",
                place="line 1",
                when=datetime(2024, 5, 1, 10, 0),
            )
    assert everything_below(quarantine) == []  # neither a copy nor a note without its file
    assert held.exists()


def test_a_retried_quarantined_file_moves_by_rename(win: WindowsFiles, tmp_path: Path) -> None:
    pos, quarantine = tmp_path / "pos", tmp_path / "quarantine"
    pos.mkdir()
    (pos / "bad.xml").write_bytes(b"<broken")
    quarantine_file(
        pos / "bad.xml",
        quarantine,
        source="pos",
        folder=pos,
        sha256="",
        reason="not XML",
        place="",
        when=datetime(2024, 5, 1, 10, 0),
    )
    win.pos_open(quarantine / "bad.xml")  # a virus scanner holds it now
    with pytest.raises(PermissionError):
        retry_quarantined(quarantine, "bad.xml")
    assert everything_below(pos) == []
    win.pos_close(quarantine / "bad.xml")
    assert retry_quarantined(quarantine, "bad.xml") == pos / "bad.xml"


def test_across_volumes_the_pos_file_is_renamed_aside_before_any_copy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pos, archive = tmp_path / "pos", tmp_path / "archive"
    pos.mkdir()
    (pos / "a.csv").write_text("x")
    real = os.replace
    moves: list[tuple[str, str]] = []

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(src).parent == pos and Path(dst).is_relative_to(archive):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        moves.append((Path(src).relative_to(tmp_path).as_posix(), Path(dst).name))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    target = move_to(pos / "a.csv", archive)
    assert target.read_text() == "x"
    assert moves[0] == ("pos/a.csv", "a.csv")  # the first step is a rename beside itself
    assert everything_below(pos) == []
    assert everything_below(archive) == ["a.csv"]


def test_a_held_file_on_another_volume_stays_where_it_is(
    win: WindowsFiles, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pos, archive = tmp_path / "pos", tmp_path / "archive"
    pos.mkdir()
    (pos / "a.csv").write_text("x")
    win.pos_open(pos / "a.csv")
    checked = win.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(dst).is_relative_to(archive):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        checked(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(PermissionError):
        move_to(pos / "a.csv", archive)
    assert everything_below(pos) == ["a.csv"]
    assert everything_below(archive) == []


def test_a_file_left_staged_goes_back_to_be_taken(tmp_path: Path) -> None:
    pos = tmp_path / "pos"
    (pos / STAGING).mkdir(parents=True)
    (pos / STAGING / "a.csv").write_text("staged")
    (pos / "a.csv").write_text("the POS wrote this one since")
    assert restore_staged(pos) == [pos / "a-2.csv"]
    assert (pos / "a-2.csv").read_text() == "staged"
    assert (pos / "a.csv").read_text() == "the POS wrote this one since"


def test_files_left_staged_in_a_subfolder_go_back_too(tmp_path: Path) -> None:
    pos = tmp_path / "pos"
    (pos / "2024" / STAGING).mkdir(parents=True)
    (pos / "2024" / STAGING / "b.csv").write_text("staged")
    assert restore_staged(pos) == [pos / "2024" / "b.csv"]
    assert not any((pos / "2024" / STAGING).iterdir())


def test_reading_a_file_never_blocks_the_pos_renaming_it(win: WindowsFiles, tmp_path: Path) -> None:
    path = tmp_path / "t.xml"
    path.write_bytes(b"<POSLog/>")
    stat = path.stat()
    handle = open_unchanged(path, stat.st_size, stat.st_mtime_ns)
    try:
        win.pos_rename(path, tmp_path / "t.xml.done")  # the POS's own rename, mid-read
        assert handle.read() == b"<POSLog/>"
    finally:
        handle.close()
    assert win.renames_refused == 0


def test_hashing_a_file_never_blocks_the_pos_renaming_it(
    win: WindowsFiles, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "t.xml"
    path.write_bytes(b"<POSLog/>")
    refused: list[OSError] = []
    opened = win.win_open

    def open_then_the_pos_renames(p: Path, share: int):  # type: ignore[no-untyped-def]
        handle = opened(p, share)
        try:
            win.pos_rename(path, tmp_path / "t.xml.done")
        except OSError as exc:
            refused.append(exc)
        return handle

    monkeypatch.setattr(_share, "_win_open", open_then_the_pos_renames)
    monkeypatch.setattr(type(path), "open", lambda p, *a, **k: open_then_the_pos_renames(p, 3))
    hash_file(path)
    assert refused == []


async def test_a_file_the_pos_holds_open_is_not_taken_until_it_lets_go(
    win: WindowsFiles, start: StartWatcher, folder: Path, sink: FakeSink, tmp_path: Path
) -> None:
    path = folder / "counts.csv"
    path.write_text(counts(1))
    win.pos_open(path, share=0x1 | 0x2)  # still writing, letting others read and write
    watcher = await start(settle_seconds=0.05)
    await asyncio.sleep(0.6)  # many settle windows: size and time hold, the POS holds it
    assert sink.calls == 0
    assert watcher.stats.pending == 1
    win.pos_close(path)
    await until(lambda: sink.names() == ["counts.csv"])
    await until(lambda: archived(tmp_path) == [f"{today()}/counts.csv"])


async def test_a_held_file_is_archived_once_the_pos_lets_go(
    win: WindowsFiles,
    start: StartWatcher,
    folder: Path,
    sink: FakeSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.sources import _watch

    monkeypatch.setattr(_watch, "RETRY_SECONDS", 0.1)
    sink.delay = 0.3
    path = folder / "counts.csv"
    path.write_text(counts(1))
    watcher = await start(settle_seconds=0.05)
    await until(lambda: sink.calls == 1)
    win.pos_open(path, share=0x1 | 0x2)  # opened again (by a scanner) before the archive step
    await until(lambda: watcher.stats.retrying == 1)
    assert archived(tmp_path) == []
    assert path.exists()
    win.pos_close(path)
    await until(lambda: archived(tmp_path) == [f"{today()}/counts.csv"])
    assert sink.names() == ["counts.csv"]  # sent once
    assert everything_below(tmp_path / "data" / "archive") == [f"{today()}/counts.csv"]


async def test_renamed_into_place_files_are_taken_at_once(
    start: StartWatcher, folder: Path, sink: FakeSink
) -> None:
    (folder / "counts.csv").write_text(counts(1))  # present at start: no rename event seen
    await start(settle_seconds=30, complete_when="renamed")
    await until(lambda: sink.names() == ["counts.csv"], timeout=3)


async def test_ready_mode_waits_for_the_marker(
    start: StartWatcher, folder: Path, sink: FakeSink
) -> None:
    await start(settle_seconds=0.05, complete_when="ready")
    (folder / "a.csv").write_text(counts(1))
    await asyncio.sleep(0.4)
    assert sink.calls == 0
    (folder / "a.csv.ready").touch()
    await until(lambda: sink.names() == ["a.csv"])


async def test_short_names_never_reach_the_archive(
    monkeypatch: pytest.MonkeyPatch,
    start: StartWatcher,
    folder: Path,
    sink: FakeSink,
    tmp_path: Path,
) -> None:
    long = folder / "sales_2024-05-01_register_01.csv"
    long.write_text(counts(1))
    short = folder / "SALES_~1.CSV"
    os.link(long, short)  # the 8.3 alias: another name of the same file
    fake_acl(monkeypatch)  # Windows; the outbox key and archive get the agent's ACL
    monkeypatch.setattr(_share, "_win_long_name", lambda p: str(long) if p == str(short) else p)
    monkeypatch.setattr(_share, "_win_open", plain_open)
    await start(settle_seconds=0.05)
    await until(lambda: archived(tmp_path) != [])
    await asyncio.sleep(0.3)
    assert sink.names() == [long.name]
    assert archived(tmp_path) == [f"{today()}/{long.name}"]


async def test_a_mapped_network_drive_is_polled(
    monkeypatch: pytest.MonkeyPatch, start: StartWatcher, folder: Path
) -> None:
    fake_acl(monkeypatch)
    monkeypatch.setattr(_share, "_win_open", plain_open)
    on_z(monkeypatch, folder)
    monkeypatch.setattr(_share, "_win_drive_type", lambda root: _share.DRIVE_REMOTE)
    watcher = await start(settle_seconds=0.05)
    assert watcher.stats.mode == "polling"


async def test_a_drive_a_service_cannot_see_is_named_as_such(
    monkeypatch: pytest.MonkeyPatch, start: StartWatcher, folder: Path
) -> None:
    fake_acl(monkeypatch)
    on_z(monkeypatch, folder)
    monkeypatch.setattr(_share, "_win_drive_type", lambda root: _share.DRIVE_NO_ROOT_DIR)
    folder.rmdir()
    watcher = await start(settle_seconds=0.05)
    assert not watcher.stats.watching
    assert "drive Z: does not exist for the account the agent runs as" in str(
        watcher.stats.last_error
    )
    assert "UNC path" in str(watcher.stats.last_error)
