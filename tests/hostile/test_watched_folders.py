"""Only regular files in a watched folder are opened as exports: a FIFO (which would
block the source until a writer came), a socket, a device or a link leading outside is
skipped unopened with its reason logged, while the files beside it flow; a file whose
name holds a control character is quarantined unread under a safe name, with a note
that stays one line per field, and `quarantine retry` puts it back inside its folder."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

import pytest

from agent.sources import list_quarantined, retry_quarantined
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
