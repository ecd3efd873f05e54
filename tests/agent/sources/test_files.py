"""Full-path globs, names that never overwrite, and hashing that notices a file still
being written."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from agent.sources import matches
from agent.sources._files import ChangedError, Look, archive_file, free_name, hash_file, look


@pytest.mark.parametrize(
    ("path", "include", "exclude", "expected"),
    [
        ("/pos/a.xml", ["**/*.xml"], [], True),  # `**/` includes the top level
        ("/pos/sub/deep/a.xml", ["**/*.xml"], [], True),
        ("/pos/a.xml", ["*.xml"], [], True),
        ("/pos/sub/a.xml", ["*.xml"], [], False),  # `*` stays inside one folder
        ("/pos/sub/a.xml", ["sub/*.xml"], [], True),
        ("/pos/sub/a.xml", ["**/sub/*.xml"], [], True),
        ("/pos/other/a.xml", ["**/sub/*.xml"], [], False),
        ("/pos/a.xml.tmp", ["**/*"], ["**/*.tmp"], False),
        ("/pos/a.xml.part", ["**/*.xml"], [], False),
        ("/pos/out/a.xml", ["/pos/out/*.xml"], [], True),  # a full path works too
        ("/pos/out/sub/a.xml", ["/pos/out/*.xml"], [], False),
        ("/pos/out/sub/a.xml", ["/pos/**/*.xml"], [], True),
        ("/pos/~lock.csv", ["**/*"], ["**/~*"], False),
        ("/pos/day_1.csv", ["**/day_[0-9].csv"], [], True),
        ("/pos/day_x.csv", ["**/day_[0-9].csv"], [], False),
        ("/pos/day_x.csv", ["**/day_[!0-9].csv"], [], True),
        ("/pos/a/b.csv", ["**/a[!x]b.csv"], [], False),  # a class never matches `/`
        ("/pos/a?b.csv", ["**/a?b.csv"], [], True),
        ("/pos/a+b (1).csv", ["**/a+b (1).csv"], [], True),  # regex characters are plain
        ("/pos/[x.csv", ["**/[x.csv"], [], True),  # an unclosed `[` is plain
        ("/pos/sales_2024.json", ["**/*.xml", "**/sales_*.json"], [], True),
    ],
)
def test_full_path_globs(path: str, include: list[str], exclude: list[str], expected: bool) -> None:
    assert matches(PurePosixPath(path), PurePosixPath("/pos"), include, exclude) is expected


def test_windows_paths_match_the_same_globs() -> None:
    root = PureWindowsPath("C:/xstore/poslog-out")
    inside = PureWindowsPath(r"C:\xstore\poslog-out\2024\t_0001.xml")
    assert matches(inside, root, ["**/*.xml"], [])
    assert matches(inside, root, [r"C:\xstore\poslog-out\**\*.xml"], [])
    assert not matches(inside, root, ["**/*.xml"], ["2024/*"])
    share = PureWindowsPath(r"\\nas\pos\out\t.xml")
    assert matches(share, PureWindowsPath(r"\\nas\pos\out"), ["**/*.xml"], [])


@pytest.mark.skipif(sys.platform == "win32", reason="names are caseless on Windows")
def test_globs_are_case_sensitive_off_windows() -> None:
    assert not matches(PurePosixPath("/pos/A.XML"), PurePosixPath("/pos"), ["**/*.xml"], [])


@pytest.mark.parametrize(
    ("taken", "name", "expected"),
    [
        ([], "a.csv", "a.csv"),
        (["a.csv"], "a.csv", "a-2.csv"),
        (["a.csv", "a-2.csv"], "a.csv", "a-3.csv"),
        (["t.xml.gz"], "t.xml.gz", "t-2.xml.gz"),
        (["README"], "README", "README-2"),
        ([".hidden"], ".hidden", ".hidden-2"),
    ],
)
def test_free_names(tmp_path: Path, taken: list[str], name: str, expected: str) -> None:
    for other in taken:
        (tmp_path / other).touch()
    assert free_name(tmp_path, name) == tmp_path / expected


def test_a_companion_file_also_takes_a_name(tmp_path: Path) -> None:
    (tmp_path / "a.csv.error.txt").touch()  # a note whose file was retried already
    assert free_name(tmp_path, "a.csv", beside=(".error.txt",)).name == "a-2.csv"


def test_archiving_drops_the_marker_and_never_overwrites(tmp_path: Path) -> None:
    pos = tmp_path / "pos"
    pos.mkdir()
    for n in range(2):
        (pos / "a.csv").write_text(str(n))
        (pos / "a.csv.ready").touch()
        archive_file(pos / "a.csv", tmp_path / "archive", "2024-03-15")
        assert not (pos / "a.csv.ready").exists()
    day = tmp_path / "archive" / "2024-03-15"
    assert (day / "a.csv").read_text() == "0"
    assert (day / "a-2.csv").read_text() == "1"


def test_hash_and_look(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    data = b"x" * (3 * 1024 * 1024 + 5)  # more than one block
    path.write_bytes(data)
    sha, size, mtime_ns = hash_file(path)
    assert sha == hashlib.sha256(data).hexdigest()
    assert size == len(data)
    seen = look(path)
    assert seen == Look(size, mtime_ns, marker=False)
    Path(str(path) + ".ready").touch()
    assert look(path) == Look(size, mtime_ns, marker=True)
    assert look(tmp_path / "gone.csv") is None


def test_a_file_growing_while_hashed_is_not_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"x" * (2 * 1024 * 1024))
    import agent.sources._files as files

    monkeypatch.setattr(files, "BLOCK", 1024 * 1024)
    appended: list[bool] = []
    real_sha256 = hashlib.sha256

    class Growing:
        """sha256 whose first update lets the POS append to the file."""

        def __init__(self) -> None:
            self._digest = real_sha256()

        def update(self, block: bytes) -> None:
            if not appended:
                appended.append(True)
                with path.open("ab") as handle:
                    handle.write(b"more")
            self._digest.update(block)

        def hexdigest(self) -> str:
            return self._digest.hexdigest()

    monkeypatch.setattr(hashlib, "sha256", Growing)
    with pytest.raises(ChangedError):
        hash_file(path)
