"""Only regular files in a watched folder are opened as exports: a FIFO (which would
block the source until a writer came), a socket, a device or a link that loops or leads
outside is skipped unopened with its reason logged, while the files beside it flow; a file
whose name holds a control character is quarantined unread under a safe name, with a note
that stays one line per field, and `quarantine retry` puts it back inside its folder. A
watched folder (or one below it) that loops, is missing or may not be listed is counted,
logged once and shown with its path and reason while the other sources flow."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, SourceSettings
from agent.sources import Watchers, list_quarantined, retry_quarantined
from agent.sources._share import Unfit, open_shared
from tests.agent.test_sources import CSV, FakeSink, start
from tests.support.records import wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "pos").mkdir()
    return tmp_path / "pos"


async def test_fifos_sockets_and_outside_links_are_skipped_and_files_flow(
    tmp_path: Path, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FakeSink()
    os.mkfifo(folder / "a-pipe.csv")
    outside = tmp_path / "secret.csv"
    outside.write_text(CSV.format(sku="OUTSIDE"))
    (folder / "b-link.csv").symlink_to(outside)
    (folder / "c-good.csv").write_text(CSV.format(sku="GOOD"))
    inside = folder / "sub"
    inside.mkdir()
    (inside / "d-real.txt").write_text(CSV.format(sku="LINKED"))  # not itself included
    (folder / "e-inside-link.csv").symlink_to(inside / "d-real.txt")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "f-sock.csv"))
    caplog.set_level(logging.WARNING, logger="tillbridge.agent.sources")
    watcher = await start(tmp_path, sink, settle_seconds=0.1, include=["**/*.csv"])
    try:

        async def taken() -> bool:
            return len(sink.files) == 2 and watcher.stats.unfit == 3

        await wait_for(taken, timeout=10)
        # A link that stays inside the folder is taken.
        assert sorted(f.name for f in sink.files) == ["c-good.csv", "e-inside-link.csv"]
        assert sorted(getattr(r, "sku", "") for r in sink.records) == ["GOOD", "LINKED"]
        reasons = {r.file: r.reason for r in caplog.records if hasattr(r, "reason")}  # type: ignore[attr-defined]
        assert reasons["a-pipe.csv"].startswith("a FIFO (named pipe), not a regular file")
        assert reasons["b-link.csv"].startswith("a link that leads outside the source folder")
        assert reasons["f-sock.csv"].startswith("a socket, not a regular file")
        assert (folder / "a-pipe.csv").exists()  # left where it is, never opened
        # A rescan does not log them again; they are remembered until they change.
        await watcher.rescan()
        assert watcher.stats.unfit == 3
    finally:
        await watcher.stop()
        server.close()


def test_opening_a_fifo_never_blocks(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(Unfit, match="not a regular file"):
        open_shared(tmp_path / "pipe")


async def test_a_name_with_a_control_character_is_quarantined_under_a_safe_name(
    tmp_path: Path, folder: Path
) -> None:
    sink = FakeSink()
    bad = folder / "counts\nReason:      forged.csv"
    bad.write_text(CSV.format(sku="X"))
    watcher = await start(tmp_path, sink, settle_seconds=0.1)
    try:

        async def quarantined() -> bool:
            return watcher.stats.quarantined == 1

        await wait_for(quarantined, timeout=10)
    finally:
        await watcher.stop()
    assert sink.files == []  # never parsed
    (item,) = list_quarantined(tmp_path / "data" / "quarantine")
    assert item.name == "counts_Reason:      forged.csv"
    assert item.reason.startswith("the file name holds a control character")
    note = Path(str(item.path) + ".error.txt").read_text()
    assert "\nReason:      forged" not in note
    assert "'counts\\nReason:      forged.csv'" in note  # the name as written, escaped
    back = retry_quarantined(tmp_path / "data" / "quarantine", item.name)
    assert back.parent == folder
    assert back.name == "counts_Reason:      forged.csv"


# -- folders that cannot be read ------------------------------------------------------------

LOOP = "a symbolic link loop"


def _two_sources(tmp_path: Path, broken: Path, good: Path, **more: Any) -> AgentConfig:
    return AgentConfig(
        store="0042",
        data_dir=tmp_path / "data",
        archive_encrypt=False,
        sources=[
            SourceSettings(name="broken", path=broken, format="inventory", settle_seconds=0.1),
            SourceSettings(name="good", path=good, format="inventory", settle_seconds=0.1, **more),
        ],
    )


async def test_a_watched_folder_that_loops_is_shown_while_other_sources_flow(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop, good = tmp_path / "loop", tmp_path / "good"
    loop.symlink_to(loop)  # /…/loop → /…/loop: every lookup through it fails with ELOOP
    good.mkdir()
    sink = FakeSink()
    caplog.set_level(logging.INFO, logger="tillbridge.agent.sources")
    watchers = Watchers(_two_sources(tmp_path, loop, good), sink)
    await watchers.start()
    try:
        (good / "a.csv").write_text(CSV.format(sku="FLOWS"))
        await wait_for(lambda: asyncio.sleep(0, len(sink.files) == 1), timeout=10)
        broken = watchers.stats()["broken"]
        assert broken.unreadable_now == {str(loop): LOOP}
        assert broken.unreadable == 1
        assert not broken.watching
        assert broken.last_error == f"cannot read {loop}: {LOOP}"
        assert watchers.stats()["good"].unreadable_now == {}
        await watchers.rescan()  # still looping: counted and logged once, not again
        await watchers.rescan()
        assert watchers.stats()["broken"].unreadable == 1
        said = [r for r in caplog.records if r.getMessage().startswith("Source path cannot")]
        assert [(r.path, r.reason, r.levelno) for r in said] == [  # type: ignore[attr-defined]
            (str(loop), LOOP, logging.ERROR)
        ]

        loop.unlink()  # fixed: the folder is there now, with a file waiting
        loop.mkdir()
        (loop / "b.csv").write_text(CSV.format(sku="AFTER"))
        await watchers.rescan()
        assert watchers.stats()["broken"].unreadable_now == {}
        assert watchers.stats()["broken"].watching
        await wait_for(lambda: asyncio.sleep(0, len(sink.files) == 2), timeout=10)
        assert any(r.getMessage() == "Source path readable again." for r in caplog.records)
    finally:
        await watchers.stop()


async def test_a_missing_folder_and_a_link_to_nowhere_are_named(tmp_path: Path) -> None:
    gone, nowhere = tmp_path / "gone", tmp_path / "nowhere"
    nowhere.symlink_to(tmp_path / "unmounted" / "share")
    sink = FakeSink()
    watchers = Watchers(_two_sources(tmp_path, gone, nowhere), sink)
    await watchers.start()
    try:
        stats = watchers.stats()
        assert stats["broken"].unreadable_now == {
            str(gone): "missing: it does not exist, or is not reachable"
        }
        assert stats["good"].unreadable_now == {
            str(nowhere): f"a link to a folder that does not exist ({tmp_path}/unmounted/share)"
        }
    finally:
        await watchers.stop()


async def test_a_file_link_that_loops_is_skipped_unopened(tmp_path: Path, folder: Path) -> None:
    sink = FakeSink()
    (folder / "loop.csv").symlink_to(folder / "loop.csv")
    (folder / "good.csv").write_text(CSV.format(sku="GOOD"))
    watcher = await start(tmp_path, sink, settle_seconds=0.1)
    try:
        await wait_for(
            lambda: asyncio.sleep(0, len(sink.files) == 1 and watcher.stats.unfit == 1),
            timeout=10,
        )
        assert watcher.stats.retrying == 0  # not retried for ever: skipped, and said why
        assert (
            watcher.stats.last_error
            == "loop.csv: skipped: a symbolic link loop, not a regular file"
        )
    finally:
        await watcher.stop()


def _as_the_service_user(probe: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run `probe` as an account that is not root (root reads any folder, whatever its
    mode): in a child that drops to `nobody` when the tests run as root, as CI does."""
    if os.geteuid() != 0:
        return asyncio.run(probe())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; it reports through the pipe
        try:
            os.setgid(65534)
            os.setuid(65534)
            said = json.dumps(asyncio.run(probe()))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            said = json.dumps({"error": repr(exc)})
        os.write(write, said.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data: dict[str, Any] = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return data


def test_a_folder_the_agent_may_not_list_is_shown_and_the_rest_flows() -> None:
    base = Path(tempfile.mkdtemp(prefix="tillbridge-denied-"))  # /tmp: `nobody` can enter
    try:
        os.chmod(base, 0o755)  # noqa: S103 - the unprivileged account must reach inside
        denied, pos = base / "denied", base / "pos"
        denied.mkdir(mode=0o755)
        pos.mkdir(mode=0o755)
        (pos / "a.csv").write_text(CSV.format(sku="FLOWS"))
        (pos / "locked").mkdir()
        (pos / "locked" / "b.csv").write_text(CSV.format(sku="LOCKED"))
        (pos / "lost+found").mkdir()  # excluded below: never reported
        for folder in (denied, pos / "locked", pos / "lost+found"):
            os.chmod(folder, 0)
        config = _two_sources(base, denied, pos, exclude=["lost+found/**"])

        async def probe() -> dict[str, Any]:
            watchers = Watchers(config, FakeSink())
            out: dict[str, Any] = {}
            for watcher in watchers.sources:
                await watcher.rescan()
                await watcher.stop()
                out[watcher.source.name] = {
                    "unreadable_now": watcher.stats.unreadable_now,
                    "unreadable": watcher.stats.unreadable,
                    "pending": sorted(p.name for p in watcher._pending),
                }
            return out

        found = _as_the_service_user(probe)
    finally:
        for folder in base.rglob("*"):
            if folder.is_dir() and not folder.is_symlink():
                os.chmod(folder, 0o700)
        shutil.rmtree(base)
    assert "error" not in found, found
    assert found["broken"]["unreadable_now"] == {str(denied): "permission denied"}
    assert found["good"]["unreadable_now"] == {str(pos / "locked"): "permission denied"}
    assert found["good"]["unreadable"] == 1
    assert found["good"]["pending"] == ["a.csv"]  # the file beside it is on its way
