"""Refused files: moved to `quarantine/` with `<name>.error.txt` beside each saying what,
why, where and how to retry; listed and moved back for the `quarantine` command.

Files move by rename only (`_files.rename`): a file the POS still holds stays where it is
and is tried again, and no copy of it is left behind."""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from agent import _acl
from common.redact import redact_text

from ._files import MOVE_LOCK, drop_marker, free_name, move_to, rename, safe_name
from ._sealed import copy_archived_file

__all__ = [
    "ERROR_SUFFIX",
    "QuarantinedFile",
    "list_quarantined",
    "quarantine_file",
    "retry_quarantined",
]

ERROR_SUFFIX = ".error.txt"

log = logging.getLogger("tillbridge.agent.sources")


@dataclasses.dataclass(frozen=True, slots=True)
class QuarantinedFile:
    """A quarantined file and what its note says."""

    name: str  # name in quarantine/ (the original name, or a numbered one on a clash)
    path: Path
    source: str
    folder: str  # the source folder it came from (where `retry` puts it back)
    reason: str
    place: str
    at: str  # when it was quarantined, ISO 8601 with the store's offset
    sha256: str = ""
    original: str = ""  # the name the POS gave it


def _one_line(text: str) -> str:
    """Notes are read line by line: a reason never spans lines (and never shows a PAN)."""
    return " ".join(redact_text(text).split())


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
    """Move a refused file to `quarantine_dir` with `<name>.error.txt` beside it.

    The note is written first and removed again if the move fails, so a quarantined file
    never lacks its note (the `quarantine` command lists notes).
    """
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    with MOVE_LOCK:
        # A name with a control character is stored, and named in the note, safely: the
        # note is read line by line, and `retry` puts the file back under this name.
        name = safe_name(path.name)
        target = free_name(quarantine_dir, name, beside=(ERROR_SUFFIX,))
        note = Path(str(target) + ERROR_SUFFIX)
        lines = [
            f"File:        {name}",
            f"Source:      {source}",
            f"Folder:      {folder}",
            f"Quarantined: {when.isoformat(timespec='seconds')}",
            f"SHA-256:     {sha256 or '(unread)'}",
            f"Reason:      {_one_line(reason)}",
            f"Place:       {_one_line(place) or '(whole file)'}",
        ]
        if name != path.name:
            lines.append(f"Named:       {path.name!a} (as the POS wrote it)")
        if target.name != name:
            lines.append(f"Stored as:   {target.name}")
        lines += [
            "",
            "Nothing from this file was forwarded. To retry, fix or replace the file and move",
            f"it back into {folder}, or run:",
            f"    tillbridge-agent quarantine retry {target.name} --config {config_file}",
            "",
        ]
        note.write_text("\n".join(lines), encoding="utf-8")
        try:
            rename(path, target)
        except BaseException:
            note.unlink(missing_ok=True)
            raise
    drop_marker(path)
    # A refused POS file holds card numbers as the POS wrote them, like an archived one: the
    # agent's account alone reads it (a rename keeps the POS's mode, or on Windows its ACL,
    # and Windows lets anyone open a file by its path through a folder they cannot list).
    problem = _acl.try_protect(target, folder=False)
    if problem is not None:
        log.warning(
            "Quarantined file could not be made readable by the agent alone.",
            extra={"path": target.name, "error": problem},
        )
    return target


def quarantine_copy(path: Path, quarantine_dir: Path, *, key_file: Path, **note: Any) -> Path:
    """Quarantine a copy of the archived file `path`, which stays where it is (a file the
    agent can no longer read: the archive keeps its copy, the quarantine shows and retries
    it). The copy is the file as the POS wrote it: a sealed one is opened with the outbox
    key in `key_file`, since `quarantine retry` hands it back to the parsers."""
    staging = quarantine_dir / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    staged = staging / path.name
    try:
        copy_archived_file(path, staged, key_file)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    try:
        return quarantine_file(staged, quarantine_dir, **note)
    finally:
        staged.unlink(missing_ok=True)


_KEYS = frozenset({"file", "source", "folder", "quarantined", "sha-256", "reason", "place"})


def _fields(note: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in note.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key in _KEYS:
            out.setdefault(key, value.strip())
    return out


def list_quarantined(quarantine_dir: Path) -> list[QuarantinedFile]:
    """Quarantined files with the reason recorded beside each, oldest first."""
    if not quarantine_dir.is_dir():
        return []
    found: list[tuple[float, str, QuarantinedFile]] = []
    for note in quarantine_dir.glob("*" + ERROR_SUFFIX):
        path = note.with_name(note.name[: -len(ERROR_SUFFIX)])
        try:
            text = note.read_text(encoding="utf-8", errors="replace")
            when = note.stat().st_mtime
        except OSError:
            continue  # removed meanwhile (retried by someone else)
        fields = _fields(text)
        item = QuarantinedFile(
            name=path.name,
            path=path,
            source=fields.get("source", ""),
            folder=fields.get("folder", ""),
            reason=fields.get("reason", ""),
            place=fields.get("place", ""),
            at=fields.get("quarantined", ""),
            sha256=fields.get("sha-256", ""),
            original=fields.get("file", path.name),
        )
        found.append((when, path.name, item))
    return [item for _, _, item in sorted(found, key=lambda t: (t[0], t[1]))]


def retry_quarantined(quarantine_dir: Path, name: str) -> Path:
    """Move a quarantined file back into its source folder under its original name (or a
    free numbered one) and delete its note; the watcher takes it again. Returns where.

    KeyError: no such quarantined file. FileNotFoundError: the file or the folder is gone.
    """
    for item in list_quarantined(quarantine_dir):
        if item.name != name:
            continue
        if not item.path.exists():
            raise FileNotFoundError(f"{item.path} is gone; only its note is left")
        folder = Path(item.folder)
        if not item.folder or not folder.is_dir():
            raise FileNotFoundError(f"the source folder {folder} does not exist")
        # Never back under a name the POS has used again meanwhile.
        target = move_to(item.path, folder, name=os.path.basename(item.original or item.name))
        Path(str(item.path) + ERROR_SUFFIX).unlink(missing_ok=True)
        return target
    raise KeyError(f"no quarantined file named {name!r}")
