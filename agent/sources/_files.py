"""File chores of the watcher: looking at a file without holding it, hashing it, and
moving it into the archive under a name that never overwrites another file."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path

__all__ = [
    "MOVE_LOCK",
    "READY_SUFFIX",
    "ChangedError",
    "Look",
    "archive_file",
    "drop_marker",
    "free_name",
    "hash_file",
    "look",
    "look_all",
    "move_to",
    "sync_file",
]

log = logging.getLogger("tillbridge.agent.sources")

READY_SUFFIX = ".ready"
BLOCK = 1024 * 1024

# Several sources archive at once (each on its own thread hop); choosing a free name and
# moving there must be one step, or two files of the same name could land on one target.
MOVE_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True, slots=True)
class Look:
    """What a `stat` says about a file, and whether its `.ready` marker is there."""

    size: int
    mtime_ns: int
    marker: bool


def look(path: Path) -> Look | None:
    """The file's size, mtime and marker; None when it is gone. Other OSErrors propagate."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    marker = os.path.exists(str(path) + READY_SUFFIX)
    return Look(stat.st_size, stat.st_mtime_ns, marker)


class ChangedError(OSError):
    """The file changed between two looks: the POS is still writing it."""


def look_all(paths: list[Path]) -> dict[Path, Look | OSError | None]:
    """`look` at each file; an OSError in place of a file that could not be looked at."""
    out: dict[Path, Look | OSError | None] = {}
    for path in paths:
        try:
            out[path] = look(path)
        except OSError as exc:
            out[path] = exc
    return out


def hash_file(path: Path) -> tuple[str, int, int]:
    """(sha256 hex, size, mtime_ns) read in blocks.

    Raises OSError when the file is locked, gone, or changed while it was read (the size
    and mtime after reading differ from before): then it is not complete yet.
    """
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        before = os.fstat(handle.fileno())
        while block := handle.read(BLOCK):
            digest.update(block)
            size += len(block)
        after = os.fstat(handle.fileno())
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or (
        size != after.st_size
    ):
        raise ChangedError(f"{path.name} changed while it was read")
    return digest.hexdigest(), size, after.st_mtime_ns


def _numbered(name: str, n: int) -> str:
    """`name` with `-n` before its extensions: `a.csv.gz` → `a-2.csv.gz`, `.x` → `.x-2`."""
    stem, dot, ext = name.lstrip(".").partition(".")
    lead = name[: len(name) - len(name.lstrip("."))]
    return f"{lead}{stem}-{n}{dot}{ext}"


def free_name(folder: Path, name: str, *, beside: tuple[str, ...] = ()) -> Path:
    """`folder/name`, or `name-2`, `name-3`, … when that (or a companion file with one of
    the `beside` suffixes) exists: never overwrite."""
    n = 1
    target = folder / name
    while target.exists() or any(Path(str(target) + s).exists() for s in beside):
        n += 1
        target = folder / _numbered(name, n)
    return target


def move_to(path: Path, folder: Path, *, name: str | None = None) -> Path:
    """Move `path` into `folder` under a free name (a copy and delete across volumes)."""
    folder.mkdir(parents=True, exist_ok=True)
    with MOVE_LOCK:
        target = free_name(folder, name or path.name)
        shutil.move(str(path), str(target))
    return target


def drop_marker(path: Path) -> None:
    """Remove the `.ready` marker of a file that has been taken, if there is one."""
    Path(str(path) + READY_SUFFIX).unlink(missing_ok=True)


def sync_file(path: Path) -> None:
    """Flush a file and the folder entry naming it to disk (the folder where the system
    allows it: Windows has no handle for a folder)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.name == "posix":
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def archive_file(path: Path, archive_dir: Path, day: str) -> Path:
    """Move an ingested file to `archive/<day>/` and drop its `.ready` marker.

    The archived file is flushed to disk: should the outbox ever be rebuilt, the archive is
    the one copy of what it held, and a POS rarely flushes what it writes."""
    target = move_to(path, archive_dir / day)
    try:
        sync_file(target)
    except OSError as exc:  # the file is archived all the same; the outbox holds its records
        log.warning("Archived file could not be flushed to disk.", extra={"error": str(exc)})
    drop_marker(path)
    return target
