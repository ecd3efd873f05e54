"""Refused files: quarantined with a note a person can act on, nothing of them sent, the
watcher unharmed; listed and moved back for another try."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime
from pathlib import Path

import pytest

from agent.sources import list_quarantined, retry_quarantined
from agent.sources._quarantine import quarantine_file

from .fakes import FakeSink, StartWatcher, archived, counts, today, until

BAD_NUMBER = "sku,location,qty,counted_at\n1,FLOOR,3,2024-03-15T21:30:00\n2,FLOOR,lots,2024-03-15\n"


async def test_a_malformed_file_is_quarantined_with_a_readable_note(
    start: StartWatcher, folder: Path, sink: FakeSink, tmp_path: Path
) -> None:
    watcher = await start()
    (folder / "bad.csv").write_text(BAD_NUMBER)
    quarantine = tmp_path / "data" / "quarantine"
    await until(lambda: watcher.stats.quarantined == 1)

    assert sink.files == []  # nothing of it was committed
    assert sink.records == []
    assert not (folder / "bad.csv").exists()
    assert (quarantine / "bad.csv").read_text() == BAD_NUMBER  # kept as it came
    note = (quarantine / "bad.csv.error.txt").read_text(encoding="utf-8")
    sha = hashlib.sha256(BAD_NUMBER.encode()).hexdigest()
    for expected in (
        "File:        bad.csv",
        "Source:      pos",
        f"Folder:      {folder}",
        f"SHA-256:     {sha}",
        "Reason:      bad quantity: 'lots' is not a number",
        "Place:       line 3",
        f"move\nit back into {folder}",
        "tillbridge-agent quarantine retry bad.csv --config /etc/tb.toml",
    ):
        assert expected in note
    when = next(line for line in note.splitlines() if line.startswith("Quarantined:"))
    stamp = datetime.fromisoformat(when.split(":", 1)[1].strip())
    assert stamp.utcoffset() is not None  # the store's local time, with its offset
    assert "bad.csv" in (watcher.stats.last_error or "")
    assert watcher.stats.pending == 0


async def test_a_folder_of_hostile_files_is_survived(
    start: StartWatcher, folder: Path, sink: FakeSink, tmp_path: Path
) -> None:
    hostile = {
        "empty.dat": b"",
        "binary.dat": bytes(range(256)) * 64 + random.Random(7).randbytes(4096),
        "truncated.xml": b'<?xml version="1.0"?>\n<POSLog><Transaction><RetailStoreID>00',
        "huge_line.csv": b"sku,location,qty,counted_at\n" + b"9" * 3_000_000 + b"\n",
        "nul.csv": b"\x00" * 10_000,
        "wrong_shape.json": b'{"orders": [1, 2, [3]]}',
    }
    for name, data in hostile.items():
        (folder / name).write_bytes(data)
    (folder / "good.csv").write_text(counts(1, 2))
    watcher = await start(format="auto")

    await until(lambda: watcher.stats.quarantined == len(hostile), timeout=30)
    await until(lambda: sink.names() == ["good.csv"])
    quarantine = tmp_path / "data" / "quarantine"
    for name in hostile:
        assert (quarantine / name).exists()
        note = (quarantine / f"{name}.error.txt").read_text(encoding="utf-8")
        assert "Reason:" in note
        assert "9999999999" not in note
    assert len(sink.records) == 2
    assert list(folder.iterdir()) == []

    (folder / "later.csv").write_text(counts(3))  # and the watcher is still at work
    await until(lambda: sink.names() == ["good.csv", "later.csv"])


async def test_a_retried_file_is_taken_again(
    start: StartWatcher, folder: Path, sink: FakeSink, tmp_path: Path
) -> None:
    watcher = await start()
    (folder / "bad.csv").write_text(BAD_NUMBER)
    await until(lambda: watcher.stats.quarantined == 1)
    quarantine = tmp_path / "data" / "quarantine"

    [item] = list_quarantined(quarantine)
    assert (item.name, item.source, item.folder) == ("bad.csv", "pos", str(folder))
    assert item.place == 'line 3, column "qty"'
    assert "'lots' is not a number" in item.reason
    assert item.sha256 == hashlib.sha256(BAD_NUMBER.encode()).hexdigest()

    (quarantine / "bad.csv").write_text(BAD_NUMBER.replace("lots", "4"))  # fixed by hand
    assert retry_quarantined(quarantine, "bad.csv") == folder / "bad.csv"
    assert not (quarantine / "bad.csv.error.txt").exists()
    await until(lambda: sink.names() == ["bad.csv"])
    assert list_quarantined(quarantine) == []
    # Archived just after the sink took it.
    await until(lambda: f"{today()}/bad.csv" in archived(tmp_path))


def _quarantine(tmp_path: Path, name: str, source_folder: Path, text: str = "x") -> Path:
    path = source_folder / name
    path.write_text(text)
    return quarantine_file(
        path,
        tmp_path / "q",
        source="pos",
        folder=source_folder,
        sha256="ab" * 32,
        reason="bad\nthings happened with 4111 1111 1111 1111",
        place="line 2",
        when=datetime.fromisoformat("2024-03-15T21:30:00+01:00"),
        config_file="/etc/tb.toml",
    )


def test_quarantine_never_overwrites_and_notes_are_one_line_and_redacted(
    tmp_path: Path,
) -> None:
    pos = tmp_path / "pos"
    pos.mkdir()
    (pos / "a.csv.ready").touch()
    first = _quarantine(tmp_path, "a.csv", pos, "first")
    second = _quarantine(tmp_path, "a.csv", pos, "second")
    assert (first.name, second.name) == ("a.csv", "a-2.csv")
    assert first.read_text() == "first"
    assert second.read_text() == "second"
    assert not (pos / "a.csv.ready").exists()  # the marker goes with the file
    note = Path(str(second) + ".error.txt").read_text()
    assert "Reason:      bad things happened with" in note
    assert "4111 1111 1111 1111" not in note
    assert "Stored as:   a-2.csv" in note
    assert "quarantine retry a-2.csv --config /etc/tb.toml" in note

    items = list_quarantined(tmp_path / "q")
    assert [(i.name, i.original) for i in items] == [("a.csv", "a.csv"), ("a-2.csv", "a.csv")]
    assert items[0].at == "2024-03-15T21:30:00+01:00"


def test_retry_puts_a_file_back_under_its_own_name_without_overwriting(
    tmp_path: Path,
) -> None:
    pos = tmp_path / "pos"
    pos.mkdir()
    _quarantine(tmp_path, "a.csv", pos, "first")
    _quarantine(tmp_path, "a.csv", pos, "second")
    (pos / "a.csv").write_text("the POS wrote a new one meanwhile")

    back = retry_quarantined(tmp_path / "q", "a-2.csv")
    assert back == pos / "a-2.csv"
    assert back.read_text() == "second"
    assert (pos / "a.csv").read_text() == "the POS wrote a new one meanwhile"
    assert [i.name for i in list_quarantined(tmp_path / "q")] == ["a.csv"]


def test_retry_says_what_is_wrong(tmp_path: Path) -> None:
    pos = tmp_path / "pos"
    pos.mkdir()
    with pytest.raises(KeyError, match=r"no quarantined file named 'nope\.csv'"):
        retry_quarantined(tmp_path / "q", "nope.csv")
    target = _quarantine(tmp_path, "gone.csv", pos)
    target.unlink()
    with pytest.raises(FileNotFoundError, match="only its note is left"):
        retry_quarantined(tmp_path / "q", "gone.csv")
    _quarantine(tmp_path, "orphan.csv", pos)
    pos.joinpath("gone.csv").touch()
    for child in pos.iterdir():
        child.unlink()
    pos.rmdir()
    with pytest.raises(FileNotFoundError, match="source folder"):
        retry_quarantined(tmp_path / "q", "orphan.csv")
    assert list_quarantined(tmp_path / "nothing") == []
