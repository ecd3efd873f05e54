"""How the agent opens the POS's files on Windows, where every open names what others may
do meanwhile: reads share delete (the POS may rename or delete the file we read), and a
probe with no sharing tells whether the POS still holds a file open.

On other systems opens share everything and nothing can be held, so these are plain
opens there. Each Windows call sits in one `_win_*` function that tests replace.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "Unfit",
    "held_open",
    "is_other_volume",
    "is_sharing_violation",
    "long_name",
    "mapped_drive",
    "missing_drive_hint",
    "open_shared",
    "released",
]

FILE_SHARE_READ = 0x1
FILE_SHARE_WRITE = 0x2
FILE_SHARE_DELETE = 0x4
SHARE_ALL = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE
SHARE_NONE = 0

ERROR_NOT_SAME_DEVICE = 17
ERROR_SHARING_VIOLATION = 32
ERROR_LOCK_VIOLATION = 33
DRIVE_NO_ROOT_DIR = 1
DRIVE_REMOTE = 4


class Unfit(OSError):
    """Something in a watched folder that is never opened as an export: a FIFO (opening
    it would block until a writer came), a device, a socket, or a link that leads out of
    the folder. The text says which."""


def is_sharing_violation(exc: BaseException) -> bool:
    """Another process holds the file in a way that forbids what we tried (Windows)."""
    return getattr(exc, "winerror", None) in (ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION)


def is_other_volume(exc: BaseException) -> bool:
    """A rename failed because source and target are on different volumes."""
    return (
        getattr(exc, "errno", None) == errno.EXDEV
        or getattr(exc, "winerror", None) == ERROR_NOT_SAME_DEVICE
    )


def open_shared(path: Path) -> BinaryIO:
    """Open for reading without ever blocking the POS: on Windows the handle shares read,
    write and delete (Python's own `open` does not share delete, so the POS's rename of
    the file would fail while the agent reads it)."""
    if sys.platform == "win32":
        return _win_open(path, SHARE_ALL)
    # Non-blocking, so that a FIFO swapped in after the last look cannot hang the open; then
    # anything but a regular file is closed unread.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise Unfit(f"{path.name}: not a regular file; not opened as an export")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def held_open(path: Path) -> bool:
    """Whether another process (the POS) still has the file open: on Windows, an open that
    shares nothing fails with a sharing violation. Elsewhere nothing tells, so False."""
    if sys.platform != "win32":
        return False
    try:
        _win_open(path, SHARE_NONE).close()
    except OSError as exc:
        if is_sharing_violation(exc):
            return True
        raise
    return False


def released(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """The files no other process holds open, and those it does."""
    free: list[Path] = []
    held: list[Path] = []
    for path in paths:
        try:
            (held if held_open(path) else free).append(path)
        except OSError:
            free.append(path)  # gone or unreadable: taking it sorts that out
    return free, held


def long_name(path: Path) -> Path:
    """The long form of a path that may hold 8.3 short names (`SALES_~1.XML`), so that a
    file is archived and logged under the name the POS gave it."""
    if sys.platform != "win32" or "~" not in str(path):
        return path
    try:
        return Path(_win_long_name(str(path)))
    except OSError:  # gone meanwhile: the caller finds out when it looks
        return path


def mapped_drive(path: Path) -> str | None:
    """On Windows, for a path on a drive letter: "remote" for a network drive, "missing"
    for a letter that does not exist for this account (a user's mapping, which a service
    never sees); None otherwise."""
    if sys.platform != "win32":
        return None
    drive = os.path.splitdrive(str(path))[0]
    if len(drive) != 2 or drive[1] != ":":
        return None  # UNC or relative
    kind = _win_drive_type(drive + "\\")
    if kind == DRIVE_REMOTE:
        return "remote"
    if kind == DRIVE_NO_ROOT_DIR:
        return "missing"
    return None


def missing_drive_hint(path: Path) -> str | None:
    """Why a folder on a drive letter cannot be found, when the letter is not there at all:
    mapped drives belong to a user's logon, and a service never sees them."""
    if mapped_drive(path) != "missing":
        return None
    drive = os.path.splitdrive(str(path))[0]
    return (
        f"drive {drive} does not exist for the account the agent runs as: a mapped network "
        "drive belongs to a user's logon and a service never sees it; use the UNC path "
        "(\\\\server\\share\\folder) instead"
    )


# -- the Windows calls ---------------------------------------------------------------------


def _win_open(path: Path, share: int) -> BinaryIO:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        raise OSError("Windows only")
    import ctypes
    import msvcrt
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    create = kernel32.CreateFileW
    create.restype = wintypes.HANDLE
    create.argtypes = [
        wintypes.LPCWSTR,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.LPVOID,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.HANDLE,
    ]
    generic_read, open_existing, normal = 0x80000000, 3, 0x80
    handle = create(str(path), generic_read, share, None, open_existing, normal, None)
    if handle is None or handle == wintypes.HANDLE(-1).value:
        code = ctypes.get_last_error()
        raise OSError(None, ctypes.FormatError(code), str(path), code)
    fd = msvcrt.open_osfhandle(handle, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    return os.fdopen(fd, "rb")


def _win_long_name(path: str) -> str:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        raise OSError("Windows only")
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    size = kernel32.GetLongPathNameW(path, None, 0)
    if not size:
        code = ctypes.get_last_error()
        raise OSError(None, ctypes.FormatError(code), path, code)
    buffer = ctypes.create_unicode_buffer(size)
    kernel32.GetLongPathNameW(path, buffer, size)
    return buffer.value


def _win_drive_type(root: str) -> int:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        raise OSError("Windows only")
    import ctypes

    return int(ctypes.WinDLL("kernel32").GetDriveTypeW(root))
