"""The `file` writer: each order as a file in the POS's import folder.

The file appears whole or not at all (`_atomic.write_new`). The name comes from the
order's key, so a resend finds its file already there and makes no second one; a file
the POS has already taken away is not written again either, because the downlink
remembers that it was written.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import httpx

from agent.config import DownlinkSettings

from ._atomic import write_new
from ._base import DownItem
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
        if (self.folder / name).exists():
            return name  # a resend: the file is there already (no need to render it)
        write_new(self.folder, name, render(item, self.format))
        return name
