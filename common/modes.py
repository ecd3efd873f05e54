"""Who may read what a program keeps on disk. Both programs hold customer data, keys and
card-holder files: their folders are 0700 and their files 0600 (owner only). On Windows,
where modes mean little, these are no-ops and the installer's ACLs decide."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "modes_checked",
    "private_dir",
    "private_file",
    "too_open",
]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_POSIX = os.name == "posix"


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) if needed, and make it the owner's only."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if _POSIX:
        os.chmod(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty if it is missing, and make it the owner's only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    os.close(fd)
    if _POSIX:
        os.chmod(path, PRIVATE_FILE)
    return path


def modes_checked() -> bool:
    """Whether `too_open` can tell anything here: False on Windows, where it says nothing
    and a caller must say that it did not check."""
    return _POSIX


def too_open(paths: Iterable[Path]) -> list[str]:
    """One line per existing path that others may read: what it is and what it should be
    (none on Windows: see `modes_checked`)."""
    if not _POSIX:
        return []
    found = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        most = PRIVATE_DIR if stat.S_ISDIR(info.st_mode) else PRIVATE_FILE
        if mode & ~most:
            found.append(f"{path}: mode {mode:04o}, should be {most:04o} (chmod {most:o} {path})")
    return found
