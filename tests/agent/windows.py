"""Windows, as far as the agent can tell, on any machine: `sys.platform`, the sharing
rules of open files, and stand-ins for pywin32 and `msvcrt`.

Windows rules these follow (Win32 API documentation):
- CreateFile: an open fails with ERROR_SHARING_VIOLATION (32) when an earlier handle's
  share mode does not allow the access asked for, or when the new open's share mode
  does not allow the access an earlier handle has.
- MoveFileEx / DeleteFile need delete access: they fail with ERROR_SHARING_VIOLATION
  while any handle to the file is open without FILE_SHARE_DELETE.
- The C runtime's `open` (Python's built-in `open`) shares read and write, not delete.
- LockFile: a locked range cannot be read or locked by another handle
  (ERROR_LOCK_VIOLATION 33, errno EACCES from the C runtime).
"""

from __future__ import annotations

import errno
import io
import os
import pathlib
import sys
import types
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from agent.sources import _share

READ, WRITE, DELETE = _share.FILE_SHARE_READ, _share.FILE_SHARE_WRITE, _share.FILE_SHARE_DELETE
CRT_SHARE = READ | WRITE  # what Python's own open() asks for on Windows


class SharingViolation(PermissionError):
    """OSError as Windows raises it for ERROR_SHARING_VIOLATION."""

    winerror = _share.ERROR_SHARING_VIOLATION

    def __init__(self, path: object) -> None:
        super().__init__(
            errno.EACCES,
            "The process cannot access the file because it is being used by another process",
            str(path),
        )


class LockViolation(PermissionError):
    winerror = _share.ERROR_LOCK_VIOLATION

    def __init__(self) -> None:
        super().__init__(errno.EACCES, "Permission denied")


def become_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sys.platform` says win32 (what the agent's Windows branches test)."""
    monkeypatch.setattr(sys, "platform", "win32")


class Handle(io.BufferedReader):
    """Our handle on a file: forgets its share mode when closed."""

    files: WindowsFiles
    key: str
    share: int

    def close(self) -> None:
        if not self.closed:
            self.files.ours.remove((self.key, self.share))
        super().close()


class WindowsFiles:
    """Open handles and their share modes, Windows' rules for opening and renaming.

    The POS's handles are `pos_open`/`pos_close`; the agent's come from `_share._win_open`
    (CreateFile with a share mode) or `Path.open` (the C runtime's sharing)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pos: dict[str, int] = {}  # path → the share mode the POS opened it with
        self.ours: list[tuple[str, int]] = []
        self.renames_refused = 0
        self._replace = os.replace
        become_windows(monkeypatch)
        monkeypatch.setattr(_share, "_win_open", self.win_open)
        monkeypatch.setattr(os, "replace", self.replace)
        real_open = pathlib.Path.open

        def crt_open(path: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if "b" in mode and "r" in mode and "+" not in mode:
                return self._open(path, CRT_SHARE)
            return real_open(path, mode, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "open", crt_open)

    @staticmethod
    def _key(path: object) -> str:
        return os.path.abspath(os.fspath(path))  # type: ignore[arg-type]

    # -- the POS ------------------------------------------------------------------------

    def pos_open(self, path: Path, share: int = READ) -> None:
        """The POS holds the file (writing it; by default it lets others read only)."""
        self.pos[self._key(path)] = share

    def pos_close(self, path: Path) -> None:
        self.pos.pop(self._key(path), None)

    def pos_rename(self, path: Path, target: Path) -> None:
        self.replace(path, target)

    # -- the rules ----------------------------------------------------------------------

    def _open(self, path: Path, share: int) -> BinaryIO:
        key = self._key(path)
        held = self.pos.get(key)
        if held is not None and (not held & READ or not share & WRITE):
            raise SharingViolation(path)  # the POS writes it: we must share write
        handle = Handle(io.FileIO(key, "rb"))
        handle.files, handle.key, handle.share = self, key, share
        self.ours.append((key, share))
        return handle

    def win_open(self, path: Path, share: int) -> BinaryIO:
        return self._open(path, share)

    def replace(self, src: Any, dst: Any) -> None:
        key = self._key(src)
        shares = [s for k, s in self.ours if k == key]
        if key in self.pos:
            shares.append(self.pos[key])
        if any(not s & DELETE for s in shares):
            self.renames_refused += 1
            raise SharingViolation(src)
        self._replace(src, dst)


# -- pywin32 and msvcrt stand-ins ---------------------------------------------------------


class FakeScm:
    """win32service and win32serviceutil as far as the agent uses them: every call kept."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.events: list[tuple[str, str]] = []
        self.running = True

    def modules(self) -> dict[str, types.ModuleType]:
        scm = self
        win32service = types.ModuleType("win32service")
        win32service.OpenSCManager = lambda *a: "manager"  # type: ignore[attr-defined]
        win32service.OpenService = lambda m, name, access: f"service:{name}"  # type: ignore[attr-defined]
        win32service.CloseServiceHandle = lambda h: None  # type: ignore[attr-defined]

        def change(*args: Any) -> None:
            scm.calls.append(("ChangeServiceConfig", *args))

        def change2(handle: Any, level: int, value: Any) -> None:
            scm.calls.append(("ChangeServiceConfig2", level, value))

        win32service.ChangeServiceConfig = change  # type: ignore[attr-defined]
        win32service.ChangeServiceConfig2 = change2  # type: ignore[attr-defined]

        util = types.ModuleType("win32serviceutil")

        class ServiceFramework:
            def __init__(self, args: Any) -> None:
                self.statuses: list[tuple[int, int]] = []

            def GetAcceptedControls(self) -> int:
                return 0x1 | 0x4  # stop, shutdown

            def ReportServiceStatus(self, status: int, waitHint: int = 5000) -> None:
                self.statuses.append((status, waitHint))

        util.ServiceFramework = ServiceFramework  # type: ignore[attr-defined]

        def handle_command_line(cls: type, argv: list[str]) -> None:
            scm.calls.append(("HandleCommandLine", cls.__name__, list(argv)))

        def stop_service(name: str) -> None:
            scm.calls.append(("StopService", name))
            if not scm.running:
                raise RuntimeError("(1062, 'ControlService', 'The service has not been started.')")
            scm.running = False

        util.HandleCommandLine = handle_command_line  # type: ignore[attr-defined]
        util.StopService = stop_service  # type: ignore[attr-defined]
        util.WaitForServiceStatus = lambda name, status, secs: scm.calls.append(  # type: ignore[attr-defined]
            ("WaitForServiceStatus", name, status)
        )
        util.RemoveService = lambda name: scm.calls.append(("RemoveService", name))  # type: ignore[attr-defined]

        manager = types.ModuleType("servicemanager")
        manager.LogErrorMsg = lambda text: scm.events.append(("error", text))  # type: ignore[attr-defined]
        manager.LogInfoMsg = lambda text: scm.events.append(("info", text))  # type: ignore[attr-defined]
        return {"win32service": win32service, "win32serviceutil": util, "servicemanager": manager}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        become_windows(monkeypatch)
        for name, module in self.modules().items():
            monkeypatch.setitem(sys.modules, name, module)

    def config2(self) -> dict[int, Any]:
        return {c[1]: c[2] for c in self.calls if c[0] == "ChangeServiceConfig2"}


class FakeMsvcrt:
    """Byte-range locks of the C runtime: `locking` at the file position, reads of a range
    another descriptor has locked fail."""

    LK_NBLCK = 2

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.locks: dict[tuple[int, int], int] = {}  # (file id, offset) → fd holding it
        become_windows(monkeypatch)
        module = types.ModuleType("msvcrt")
        module.LK_NBLCK = self.LK_NBLCK  # type: ignore[attr-defined]
        module.locking = self.locking  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "msvcrt", module)
        real_read, real_close = os.read, os.close

        def read(fd: int, n: int) -> bytes:
            start = os.lseek(fd, 0, os.SEEK_CUR)
            for (ino, offset), holder in self.locks.items():
                if ino == self._id(fd) and holder != fd and start <= offset < start + n:
                    raise LockViolation()
            return real_read(fd, n)

        def close(fd: int) -> None:
            for key in [k for k, holder in self.locks.items() if holder == fd]:
                del self.locks[key]
            real_close(fd)

        monkeypatch.setattr(os, "read", read)
        monkeypatch.setattr(os, "close", close)

    @staticmethod
    def _id(fd: int) -> int:
        return os.fstat(fd).st_ino

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        offset = os.lseek(fd, 0, os.SEEK_CUR)
        key = (self._id(fd), offset)
        if key in self.locks and self.locks[key] != fd:
            raise LockViolation()
        self.locks[key] = fd


class FakeAcl:
    """The ACL backend: what was protected, and what a test says is exposed."""

    def __init__(self) -> None:
        self.protected: dict[Path, bool] = {}  # path → folder
        self.exposed: dict[Path, str] = {}

    def protect(self, path: Path, *, folder: bool) -> None:
        self.protected[Path(path)] = folder
        self.exposed.pop(Path(path), None)

    def exposure(self, path: Path) -> str | None:
        if Path(path) in self.exposed:
            return self.exposed[Path(path)]
        return None if Path(path) in self.protected else "readable by BUILTIN\\Users"

    def fix(self, path: Path, *, folder: bool) -> str:
        return f'icacls "{path}" /inheritance:r'


def fake_acl(monkeypatch: pytest.MonkeyPatch) -> FakeAcl:
    from agent import _acl

    fake = FakeAcl()
    become_windows(monkeypatch)
    monkeypatch.setattr(_acl, "WINDOWS", fake)
    return fake
