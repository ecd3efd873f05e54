"""The `file` writer: each order as a file in the POS's import folder.

The file appears whole or not at all: written under a hidden temporary name in the same
folder, flushed to disk, then linked to its name (a link never replaces a file that is
there; where the share cannot link, a rename, which Windows also refuses over a file).
The name comes from the order's key, so a resend finds its file already there and makes
no second one; a file the POS has already taken away is not written again either,
because the downlink remembers that it was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from pathlib import Path

import httpx

from agent.config import DownlinkSettings

from ._base import DownItem, WriteError
from ._formats import EXTENSIONS, render

__all__ = ["FileWriter", "file_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MOST = 120


def file_name(key: str, extension: str) -> str:
    """`order:ct-main:a1b2:3` → `order_ct-main_a1b2_3.json`: letters, digits, `.`, `_`
    and `-` only. A key that needed more than its colons replaced, or is long, gets a
    short hash of the whole key, so two keys never share a name."""
    plain = key.replace(":", "_")
    safe = _UNSAFE.sub("_", plain).lstrip(".-")
    if safe != plain or len(safe) > _MOST or not safe:
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        safe = f"{safe[:_MOST]}-{digest}"
    return safe + extension


class FileWriter:
    name = "file"

    def __init__(self, folder: Path, fmt: str) -> None:
        self.folder = folder
        self.format = fmt

    @classmethod
    def from_settings(
        cls, settings: DownlinkSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> FileWriter:
        assert settings.folder is not None  # the config refuses `file` without a folder
        return cls(settings.folder, settings.format)

    async def write(self, item: DownItem) -> str:
        return await asyncio.to_thread(self._write, item)

    def _write(self, item: DownItem) -> str:
        name = file_name(item.key, EXTENSIONS[self.format])
        target = self.folder / name
        if target.exists():
            return name  # a resend: the file is there already
        if not self.folder.is_dir():
            raise WriteError(f"the import folder {self.folder} does not exist or is not reachable")
        data = render(item, self.format)
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        try:
            with tmp.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, target)
            except FileExistsError:
                return name  # written meanwhile by an earlier attempt
            except OSError:
                # A share without hard links: rename, unless the name is taken meanwhile.
                if target.exists():
                    return name
                os.rename(tmp, target)
            _sync_folder(self.folder)
        except OSError as exc:
            raise WriteError(f"could not write {name} into {self.folder}: {exc}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return name


def _sync_folder(folder: Path) -> None:
    """Make the new name durable (POSIX); Windows has no handle on a folder to flush."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
