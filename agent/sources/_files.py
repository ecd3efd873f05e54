"""File chores of the watcher: full-path glob matching, hashing, and moving a file to the
archive or to quarantine with a note that says why, where and how to retry."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import sys
from datetime import datetime
from functools import lru_cache
from pathlib import Path, PurePath

__all__ = [
    "QuarantinedFile",
    "archive_file",
    "hash_file",
    "list_quarantined",
    "matches",
    "quarantine_file",
    "retry_quarantined",
]

ERROR_SUFFIX = ".error.txt"
_CASELESS = sys.platform == "win32"


@lru_cache(maxsize=256)
def _pattern(glob: str) -> re.Pattern[str]:
    """A full-path glob as a regex: `**/` is any number of folders (none too), `*` and `?`
    stay inside one path segment, `[...]` is a character class."""
    out = []
    i = 0
    text = glob.replace("\\", "/")
    while i < len(text):
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        elif text[i] == "[" and "]" in text[i + 1 :]:
            end = text.index("]", i + 1)
            body = text[i + 1 : end].replace("\\", "\\\\")
            out.append(f"[^{body[1:]}]" if body.startswith("!") else f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE if _CASELESS else 0)


def matches(path: Path, root: Path, include: list[str], exclude: list[str]) -> bool:
    """True when `path` matches an include glob and no exclude glob. A glob is matched
    against the path below `root` and against the full path, so both `**/*.xml` and
    `C:/pos/out/*.xml` work."""
    full = PurePath(path).as_posix()
    try:
        relative = PurePath(path).relative_to(root).as_posix()
    except ValueError:
        relative = full

    def hit(globs: list[str]) -> bool:
        return any(
            _pattern(g).match(relative) is not None or _pattern(g).match(full) is not None
            for g in globs
        )

    return hit(include) and not hit(exclude)


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) read in blocks; raises OSError when the file is locked or gone."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `name-2.ext`, `name-3.ext`, … when taken: never overwrite."""
    target = folder / name
    stem, dot, ext = name.partition(".")
    n = 1
    while target.exists() or Path(str(target) + ERROR_SUFFIX).exists():
        n += 1
        target = folder / f"{stem}-{n}{dot}{ext}"
    return target


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, path.name)
    shutil.move(str(path), str(target))  # a copy and delete when the POS folder is elsewhere
    return target


def archive_file(path: Path, archive_dir: Path, day: str) -> Path:
    """Move an ingested file to `archive/<day>/` and drop its `.ready` marker."""
    target = _move(path, archive_dir / day)
    marker = Path(str(path) + ".ready")
    if marker.exists():
        marker.unlink(missing_ok=True)
    return target


@dataclasses.dataclass(frozen=True, slots=True)
class QuarantinedFile:
    name: str
    path: Path
    source: str
    folder: str
    reason: str
    place: str
    at: str


def quarantine_file(
    path: Path,
    quarantine_dir: Path,
    *,
    source: str,
    folder: Path,
    sha256: str,
    reason: str,
    place: str,
    when: datetime,
    config_file: str = "<config file>",
) -> Path:
    """Move a refused file aside with `<name>.error.txt` beside it."""
    target = _move(path, quarantine_dir)
    marker = Path(str(path) + ".ready")
    if marker.exists():
        marker.unlink(missing_ok=True)
    note = "\n".join(
        [
            f"File:       {path.name}",
            f"Source:     {source}",
            f"Folder:     {folder}",
            f"Quarantined: {when.isoformat(timespec='seconds')}",
            f"SHA-256:    {sha256 or '(unread)'}",
            f"Reason:     {reason}",
            f"Place:      {place or '(whole file)'}",
            "",
            "Nothing from this file was forwarded. To retry, fix or replace the file and move",
            f"it back into {folder}, or run:",
            f"    tillbridge-agent quarantine retry {target.name} --config {config_file}",
            "",
        ]
    )
    error = Path(str(target) + ERROR_SUFFIX)
    error.write_text(note, encoding="utf-8")
    return target


def _fields(note: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in note.splitlines():
        key, sep, value = line.partition(":")
        if sep and key and not key.startswith(" "):
            out.setdefault(key.strip().lower(), value.strip())
    return out


def list_quarantined(quarantine_dir: Path) -> list[QuarantinedFile]:
    """Quarantined files with the reason recorded beside each, oldest first."""
    found = []
    if not quarantine_dir.is_dir():
        return []
    for error in sorted(quarantine_dir.glob("*" + ERROR_SUFFIX), key=os.path.getmtime):
        path = error.with_name(error.name[: -len(ERROR_SUFFIX)])
        fields = _fields(error.read_text(encoding="utf-8", errors="replace"))
        found.append(
            QuarantinedFile(
                name=path.name,
                path=path,
                source=fields.get("source", ""),
                folder=fields.get("folder", ""),
                reason=fields.get("reason", ""),
                place=fields.get("place", ""),
                at=fields.get("quarantined", ""),
            )
        )
    return found


def retry_quarantined(quarantine_dir: Path, name: str) -> Path:
    """Move a quarantined file back into its source folder (the watcher takes it again)."""
    for item in list_quarantined(quarantine_dir):
        if item.name == name:
            if not item.path.exists():
                raise FileNotFoundError(f"{item.path} is gone; only its note is left")
            folder = Path(item.folder)
            if not folder.is_dir():
                raise FileNotFoundError(f"the source folder {folder} does not exist")
            target = _free_name(folder, item.name)
            shutil.move(str(item.path), str(target))
            Path(str(item.path) + ERROR_SUFFIX).unlink(missing_ok=True)
            return target
    raise KeyError(f"no quarantined file named {name!r}")
