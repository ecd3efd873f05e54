"""File chores of the watcher: looking at a file without holding it, hashing it, and
moving it into the archive under a name that never overwrites another file.

A POS file is only ever renamed, never copied and deleted: when the POS still holds it
(a sharing violation on Windows) the rename fails, the file stays where it is and is
tried again. Across volumes the file is first renamed into a hidden folder beside it,
and only that copy, which the POS no longer knows, is copied over and deleted."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import re
import shutil
import stat as stat_mode
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path

from agent import _acl
from agent._seal import SealError

from ._sealed import seal_file, sealed_key_id
from ._share import Unfit, is_other_volume, missing_drive_hint, open_shared

__all__ = [
    "MOVE_LOCK",
    "READY_SUFFIX",
    "STAGING",
    "ChangedError",
    "Look",
    "Unfit",
    "archive_days",
    "archive_file",
    "drop_marker",
    "folder_problem",
    "free_name",
    "hash_file",
    "look",
    "look_all",
    "move_to",
    "path_problem",
    "purge_archive",
    "rename",
    "restore_staged",
    "safe_name",
    "seal_archive",
    "sealed_key_ids",
    "sync_file",
    "unfit",
    "unsafe_name",
]

log = logging.getLogger("tillbridge.agent.sources")

READY_SUFFIX = ".ready"
STAGING = ".tillbridge-moving"  # hidden: the watcher never takes files below it
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


# Control characters (C0, DEL, C1) and line or paragraph separators: a name holding one
# could inject a line into a quarantine note or a log read line by line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_KINDS = (
    (stat_mode.S_ISFIFO, "a FIFO (named pipe)"),
    (stat_mode.S_ISSOCK, "a socket"),
    (stat_mode.S_ISCHR, "a character device"),
    (stat_mode.S_ISBLK, "a block device"),
    (stat_mode.S_ISDIR, "a folder"),
)


def unsafe_name(name: str) -> bool:
    """True when a file name holds a control character or a line separator."""
    return _CONTROL.search(name) is not None


def safe_name(name: str) -> str:
    """`name` with each control character and line separator replaced by `_`."""
    return _CONTROL.sub("_", name)


def _kind(mode: int) -> str | None:
    """What a non-regular file is, or None for a regular file."""
    if stat_mode.S_ISREG(mode):
        return None
    return next((said for test, said in _KINDS if test(mode)), "not a regular file")


_WIN_LOOP = 1921  # ERROR_CANT_RESOLVE_FILENAME: Windows' word for a link loop


def _looped(exc: OSError) -> bool:
    return exc.errno == errno.ELOOP or getattr(exc, "winerror", None) == _WIN_LOOP


def path_problem(exc: OSError) -> str:
    """What an OSError met on a watched path means, in the words `status` shows."""
    if _looped(exc):
        return "a symbolic link loop"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "missing"
    return exc.strerror or str(exc)


def folder_problem(folder: Path) -> str | None:
    """Why the watcher cannot list `folder`, in words; None when it can. Blocking: it may
    reach a network share."""
    try:
        found = os.stat(folder)
    except FileNotFoundError:
        if os.path.islink(folder):
            return f"a link to a folder that does not exist ({os.readlink(folder)})"
        return missing_drive_hint(folder) or "missing: it does not exist, or is not reachable"
    except OSError as exc:
        return path_problem(exc)
    if not stat_mode.S_ISDIR(found.st_mode):
        return "not a folder"
    try:
        with os.scandir(folder) as entries:
            next(entries, None)
    except OSError as exc:
        return path_problem(exc)
    return None


def unfit(path: Path, folder: Path | None) -> os.stat_result:
    """The file's stat, following a link only when it stays inside `folder` (its real
    path); Unfit for anything but a regular file, and for a link that loops.
    FileNotFoundError when it is gone."""
    found = os.lstat(path)
    if stat_mode.S_ISLNK(found.st_mode):
        if folder is not None:
            real, inside = os.path.realpath(path), os.path.realpath(folder)
            if os.path.commonpath([real, inside]) != inside:
                raise Unfit(f"a link that leads outside the source folder ({real})")
        try:
            found = os.stat(path)
        except OSError as exc:
            if _looped(exc):
                raise Unfit("a symbolic link loop, not a regular file") from None
            raise
    kind = _kind(found.st_mode)
    if kind is not None:
        raise Unfit(f"{kind}, not a regular file")
    return found


def look(path: Path, folder: Path | None = None) -> Look | None:
    """The file's size, mtime and marker; None when it is gone. Unfit when it is no regular
    file (see `unfit`); other OSErrors propagate."""
    try:
        stat = unfit(path, folder)
    except FileNotFoundError:
        return None
    marker = os.path.exists(str(path) + READY_SUFFIX)
    return Look(stat.st_size, stat.st_mtime_ns, marker)


class ChangedError(OSError):
    """The file changed between two looks: the POS is still writing it."""


def look_all(paths: list[Path], folder: Path | None = None) -> dict[Path, Look | OSError | None]:
    """`look` at each file; an OSError (Unfit among them) in place of a file that could
    not be looked at."""
    out: dict[Path, Look | OSError | None] = {}
    for path in paths:
        try:
            out[path] = look(path, folder)
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
    with open_shared(path) as handle:
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
    """Move `path` into `folder` under a free name, by rename (see `rename`)."""
    folder.mkdir(parents=True, exist_ok=True)
    with MOVE_LOCK:
        target = free_name(folder, name or path.name)
        rename(path, target)
    return target


def rename(path: Path, target: Path) -> None:
    """Rename `path` to `target` (free: the caller holds MOVE_LOCK and chose it).

    Any failure leaves `path` where it was. Across volumes, `path` is renamed into the
    hidden STAGING folder beside it first; then the staged file is copied, flushed,
    renamed into place and deleted. A failure after the first rename leaves the file
    staged, and `restore_staged` puts it back for the watcher to take again."""
    try:
        os.replace(path, target)
        return
    except OSError as exc:
        if not is_other_volume(exc):
            raise  # a sharing violation, a full disk…: the file stays, tried again later
    staging = path.parent / STAGING
    staging.mkdir(exist_ok=True)
    staged = free_name(staging, path.name)
    os.replace(path, staged)  # within the POS's own volume: the one step it can feel
    partial = target.with_name(target.name + ".partial")
    try:
        shutil.copyfile(staged, partial)
        sync_file(partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    staged.unlink()


def restore_staged(folder: Path) -> list[Path]:
    """Put files an interrupted move left in a STAGING folder (below `folder`, at any
    depth) back beside it under free names; returns where. Their records are committed:
    the watcher finds them already ingested and archives them."""
    restored = []
    for root, dirs, _ in os.walk(folder):
        if STAGING in dirs:
            staging = Path(root) / STAGING
            with MOVE_LOCK:
                for staged in sorted(p for p in staging.iterdir() if p.is_file()):
                    target = free_name(Path(root), staged.name)
                    os.replace(staged, target)
                    restored.append(target)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return restored


def drop_marker(path: Path) -> None:
    """Remove the `.ready` marker of a file that has been taken, if there is one."""
    Path(str(path) + READY_SUFFIX).unlink(missing_ok=True)


def sync_file(path: Path) -> None:
    """Flush a file and the folder entry naming it to disk (the folder where the system
    allows it: Windows has no handle for a folder)."""
    # Windows flushes only a handle open for writing.
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
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


def archive_days(archive_dir: Path) -> list[tuple[date, Path]]:
    """The archive's day folders (`archive/YYYY-MM-DD/`), oldest first."""
    if not archive_dir.is_dir():
        return []
    days = []
    for folder in archive_dir.iterdir():
        try:
            when = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if folder.is_dir():
            days.append((when, folder))
    return sorted(days)


def archive_file(path: Path, archive_dir: Path, day: str, *, key: bytes | None = None) -> Path:
    """Move an ingested file to `archive/<day>/` and drop its `.ready` marker; with a `key`
    (`archive_encrypt`), seal it there with the outbox key (see `_sealed`).

    The archived file is flushed to disk: should the outbox ever be rebuilt, the archive is
    the one copy of what it held, and a POS rarely flushes what it writes. It holds card
    numbers and names as the POS wrote them, so it and its day folder are readable by the
    agent's account alone (0600 and 0700; on Windows an ACL, which a rename does not
    inherit from the folder it lands in)."""
    folder = archive_dir / day
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        _protected(folder, folder=True)
    target = move_to(path, folder)
    drop_marker(path)
    _protected(target, folder=False)
    if key is not None:
        try:
            seal_file(target, key, archive_dir)
        except (OSError, SealError) as exc:  # archived all the same, 0600; the next start seals it
            log.warning(
                "Archived file could not be sealed; it stays plain until the next start.",
                extra={"path": target.name, "error": getattr(exc, "strerror", None) or str(exc)},
            )
    try:
        sync_file(target)
    except OSError as exc:  # the file is archived all the same; the outbox holds its records
        log.warning("Archived file could not be flushed to disk.", extra={"error": str(exc)})
    return target


def _protected(path: Path, *, folder: bool) -> None:
    problem = _acl.try_protect(path, folder=folder)
    if problem is not None:  # archived all the same; doctor names what is still open
        log.warning(
            "Archived file or folder could not be made readable by the agent alone.",
            extra={"path": path.name, "error": problem},
        )


def purge_archive(archive_dir: Path, before: date) -> list[tuple[date, int]]:
    """Remove the archive's day folders older than `before`: (day, files removed) of each,
    oldest first. A day that cannot be removed whole stays for the next purge."""
    purged: list[tuple[date, int]] = []
    for when, folder in archive_days(archive_dir):
        if when >= before:
            break
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            log.warning(
                "Archive day could not be purged; tried again at the next purge.",
                extra={"day": when.isoformat(), "error": exc.strerror or str(exc)},
            )
            continue
        purged.append((when, count))
    return purged


def seal_archive(archive_dir: Path, key: bytes, *, stopping: Callable[[], bool] = bool) -> int:
    """Seal every plain archived file with `key`: those archived before `archive_encrypt`
    was set, or left plain by a stop part-way. Returns how many were sealed; a file that
    cannot be sealed now is logged and left for the next start. `stopping()` true ends it
    between two files."""
    sealed = 0
    for _when, folder in archive_days(archive_dir):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if stopping():
                return sealed
            try:
                sealed += seal_file(path, key, archive_dir)
            except (OSError, SealError) as exc:
                log.warning(
                    "Archived file could not be sealed; tried again at the next start.",
                    extra={"path": path.name, "error": getattr(exc, "strerror", None) or str(exc)},
                )
    return sealed


def sealed_key_ids(archive_dir: Path) -> dict[str | None, int]:
    """How many archived files were sealed with each key id (None: plain files)."""
    found: dict[str | None, int] = {}
    for _when, folder in archive_days(archive_dir):
        for path in folder.rglob("*"):
            try:
                if not path.is_file():
                    continue
                said = sealed_key_id(path)
            except OSError:
                continue  # purged meanwhile, or unreadable: doctor's permission check says
            found[said] = found.get(said, 0) + 1
    return found
