"""Files that appear in a POS import folder whole or not at all.

Written under a hidden temporary name in the same folder, flushed to disk, then linked
to its name (a link never replaces a file that is there; where the share cannot link, a
rename, which Windows also refuses over a file). A name that is there already is left
alone: writers name files so that the same content always gets the same name.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ._base import WriteError

__all__ = ["replace_file", "write_new"]


def write_new(folder: Path, name: str, data: bytes) -> bool:
    """Write `data` as `folder/name` unless that name is there; True when written now."""
    target = folder / name
    if target.exists():
        return False  # a resend: the file is there already
    if not folder.is_dir():
        raise WriteError(f"the import folder {folder} does not exist or is not reachable")
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    try:
        _write_synced(tmp, data)
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False  # written meanwhile by an earlier attempt
        except OSError:
            # A share without hard links: rename, unless the name is taken meanwhile.
            if target.exists():
                return False
            os.rename(tmp, target)
        _sync_folder(folder)
    except OSError as exc:
        raise WriteError(f"could not write {name} into {folder}: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return True


def replace_file(path: Path, data: bytes | None) -> None:
    """Put `data` in place of the file at `path` in one step, or remove it (None). For
    rewriting a file the POS has not taken yet (a purge); a file it took meanwhile is
    gone and stays gone."""
    if data is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
        _sync_folder(path.parent)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_folder(folder: Path) -> None:
    """Make the new name durable (POSIX); Windows has no handle on a folder to flush."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
