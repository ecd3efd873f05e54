"""One agent per data folder: the daemon and the commands that write to the outbox take an
exclusive lock on `<data_dir>/agent.lock`, so two processes never hand out the same seq.

On Windows the lock is a byte range (`msvcrt.locking`), which also forbids other
processes to read it: the range lies past the holder's note ("pid N") so the note
stays readable, and a failed lock of any kind means another process has the folder."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["AlreadyRunning", "data_dir_lock"]

LOCK_OFFSET = 4096  # the locked byte on Windows: far past the note at the start


class AlreadyRunning(RuntimeError):
    """Another process holds this data folder."""


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[Path]:
    """Hold the data folder's lock for the block; AlreadyRunning when another process does."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "agent.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            if sys.platform == "win32":
                import msvcrt

                os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise AlreadyRunning(
                f"{data_dir} is in use by {_holder(fd)}; stop that agent first "
                "(systemctl stop tillbridge-agent, or stop the TillbridgeAgent service)"
            ) from None
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        yield path
    finally:
        os.close(fd)  # closing releases the lock


def _holder(fd: int) -> str:
    """The holder's note, or "another process" when it cannot be read."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        note = os.read(fd, 64).decode(errors="replace").strip()
    except OSError:
        note = ""
    return note or "another process"
