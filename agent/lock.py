"""One agent per data folder: the daemon and the commands that write to the outbox take an
exclusive lock on `<data_dir>/agent.lock`, so two processes never hand out the same seq."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["AlreadyRunning", "data_dir_lock"]


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
            if sys.platform == "win32":  # pragma: no cover - Windows only
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            raise AlreadyRunning(
                f"{data_dir} is in use by {holder}; stop that agent first "
                "(systemctl stop tillbridge-agent, or stop the TillbridgeAgent service)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        yield path
    finally:
        os.close(fd)  # closing releases the lock
