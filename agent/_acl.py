"""Who may read the agent's secrets and data: the outbox key, the outbox, the archive of raw
POS files, the logs and the password files. On Linux that is a mode (0600 for a file,
0700 for a folder); on Windows, where a mode means only "read-only", it is an ACL that
grants only SYSTEM, Administrators and the agent's own account and inherits nothing.

Every such call goes through `backend()`, one object per platform; tests stand a fake in
for the Windows one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path
from typing import Protocol

__all__ = [
    "Backend",
    "backend",
    "exposure",
    "fix",
    "protect_file",
    "protect_folder",
    "try_protect",
]

SERVICE_ACCOUNT = "NT SERVICE\\TillbridgeAgent"


class Backend(Protocol):
    def protect(self, path: Path, *, folder: bool) -> None:
        """Allow only the owners named above (and inherit that below a folder)."""

    def exposure(self, path: Path) -> str | None:
        """Who else may read `path`, in words; None when only the owners may."""

    def fix(self, path: Path, *, folder: bool) -> str:
        """The command an operator runs to protect `path`."""


class PosixModes:
    """Owner-only modes."""

    def protect(self, path: Path, *, folder: bool) -> None:
        os.chmod(path, 0o700 if folder else 0o600)

    def exposure(self, path: Path) -> str | None:
        mode = stat.S_IMODE(path.stat().st_mode)
        if not mode & 0o077:
            return None
        who = " and ".join(
            name for name, bits in (("its group", 0o070), ("other users", 0o007)) if mode & bits
        )
        return f"open to {who} (mode {mode:04o})"

    def fix(self, path: Path, *, folder: bool) -> str:
        return f"chmod {'700' if folder else '600'} {path}"


class WindowsAcl:  # pragma: no cover - Windows only (tests use a fake backend)
    """A protected DACL: SYSTEM and Administrators full control, the agent's account (the
    service's virtual account, or whoever runs the agent by hand) full control."""

    def _owners(self) -> list[object]:
        import win32api
        import win32security

        sids = [
            win32security.CreateWellKnownSid(win32security.WinLocalSystemSid, None),
            win32security.CreateWellKnownSid(win32security.WinBuiltinAdministratorsSid, None),
        ]
        token = win32security.OpenProcessToken(
            win32api.GetCurrentProcess(), win32security.TOKEN_QUERY
        )
        sids.append(win32security.GetTokenInformation(token, win32security.TokenUser)[0])
        # Not installed as a service: a hand-run agent's own account suffices.
        with contextlib.suppress(win32security.error):
            sids.append(win32security.LookupAccountName(None, SERVICE_ACCOUNT)[0])
        return sids

    def protect(self, path: Path, *, folder: bool) -> None:
        import ntsecuritycon
        import win32security

        inherit = (
            ntsecuritycon.OBJECT_INHERIT_ACE | ntsecuritycon.CONTAINER_INHERIT_ACE if folder else 0
        )
        dacl = win32security.ACL()
        for sid in self._owners():
            dacl.AddAccessAllowedAceEx(
                win32security.ACL_REVISION, inherit, ntsecuritycon.FILE_ALL_ACCESS, sid
            )
        win32security.SetNamedSecurityInfo(
            str(path),
            win32security.SE_FILE_OBJECT,
            win32security.DACL_SECURITY_INFORMATION
            | win32security.PROTECTED_DACL_SECURITY_INFORMATION,
            None,
            None,
            dacl,
            None,
        )

    def exposure(self, path: Path) -> str | None:
        import ntsecuritycon
        import win32security

        info = win32security.GetNamedSecurityInfo(
            str(path), win32security.SE_FILE_OBJECT, win32security.DACL_SECURITY_INFORMATION
        )
        dacl = info.GetSecurityDescriptorDacl()
        if dacl is None:
            return "open to everyone (no ACL)"
        owners = {str(sid) for sid in self._owners()}
        read = ntsecuritycon.FILE_READ_DATA | ntsecuritycon.GENERIC_READ
        read |= ntsecuritycon.GENERIC_ALL
        others = []
        for index in range(dacl.GetAceCount()):
            (kind, _flags), mask, sid = dacl.GetAce(index)[:3]
            if kind != win32security.ACCESS_ALLOWED_ACE_TYPE or not mask & read:
                continue
            if str(sid) in owners or str(sid) == "S-1-3-0":  # CREATOR OWNER
                continue
            try:
                name, domain, _ = win32security.LookupAccountSid(None, sid)
                others.append(f"{domain}\\{name}" if domain else name)
            except win32security.error:
                others.append(str(sid))
        if not others:
            return None
        return "readable by " + ", ".join(sorted(set(others)))

    def fix(self, path: Path, *, folder: bool) -> str:
        grant = "(OI)(CI)F" if folder else "F"
        return (
            f'icacls "{path}" /inheritance:r /grant:r *S-1-5-18:{grant} *S-1-5-32-544:{grant} '
            f'"{SERVICE_ACCOUNT}:{grant}"' + (" /T" if folder else "")
        )


POSIX: Backend = PosixModes()
WINDOWS: Backend = WindowsAcl()


def backend() -> Backend:
    """The backend of the platform the agent runs on."""
    return WINDOWS if sys.platform == "win32" else POSIX


def protect_file(path: Path) -> None:
    backend().protect(path, folder=False)


def protect_folder(path: Path) -> None:
    backend().protect(path, folder=True)


def try_protect(path: Path, *, folder: bool) -> str | None:
    """Protect `path`; None when done, else why not (the agent goes on: `doctor` names
    what is still exposed and the fix)."""
    try:
        backend().protect(path, folder=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def exposure(path: Path) -> str | None:
    return backend().exposure(path)


def fix(path: Path) -> str:
    return backend().fix(path, folder=path.is_dir())
