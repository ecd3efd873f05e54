"""Archived POS files sealed with the outbox key (`archive_encrypt`): they hold card
numbers and names as the POS wrote them, so at rest they are ciphertext only the agent's
key opens. Every reader of the archive goes through `read_archived_file`, which opens a
sealed file and passes a plain one (archived before the option, or not sealed yet)
through as it is.

A sealed file keeps its archived name. Its first line says what it is in words a person
who opens it can read, and names the key by its id; then the file follows in 1 MiB
chunks, each AES-256-GCM under a nonce made of a random prefix, the chunk's number and
a last-chunk flag, all bound to that first line (the STREAM construction: no chunk can
be reordered, dropped or cut off unnoticed). Memory stays at one chunk whatever the
file's size.

A file is sealed in place once it is archived: the ciphertext is written under a scratch
name in `archive/.sealing/`, flushed, and renamed over the plain file, so the archive
holds one whole copy at every moment. A stop in between leaves the file plain (0600, as
every archived file) until the next start seals it. The plain file's blocks are freed,
not overwritten: on SSDs and journaling file systems no program can promise more.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent import _acl
from agent._seal import SealError, key_id, load_key

__all__ = [
    "SCRATCH",
    "clear_scratch",
    "copy_archived_file",
    "read_archived_file",
    "seal_file",
    "sealed_key_id",
]

MAGIC = b"TILLBRIDGE-SEALED-ARCHIVE/1 key="
_ID_CHARS = 16
_NOTE = b" (AES-256-GCM, the outbox key; tillbridge-agent reads it)\n"
CHUNK = 1024 * 1024
_TAG = 16
_PREFIX = 7
SCRATCH = ".sealing"  # below archive/, never a day folder: no reader lists it


def _nonce(prefix: bytes, number: int, last: bool) -> bytes:
    if number >= 1 << 32:
        raise SealError("a file over 4 PiB cannot be sealed")
    return prefix + number.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def sealed_key_id(path: Path) -> str | None:
    """The id of the key the archived file `path` was sealed with; None for a plain file."""
    with path.open("rb") as handle:
        head = handle.read(len(MAGIC) + _ID_CHARS)
    if not head.startswith(MAGIC):
        return None
    return head[len(MAGIC) :].decode("ascii", "replace")


def seal_file(path: Path, key: bytes, archive_dir: Path) -> bool:
    """Seal the archived file `path` in place with `key`; False when it was sealed already.
    OSError (the file stays as it was) when it cannot be read, written or renamed."""
    scratch = archive_dir / SCRATCH
    with path.open("rb") as source:
        if source.read(len(MAGIC)) == MAGIC:
            return False
        source.seek(0)
        if not scratch.is_dir():
            scratch.mkdir(parents=True, exist_ok=True)
            _acl.try_protect(scratch, folder=True)  # what is written here inherits it
        fd, name = tempfile.mkstemp(dir=scratch, suffix=".part")  # 0600 on POSIX
        staged = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                _acl.try_protect(staged, folder=False)
                _seal_stream(source, out, key)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
    try:  # the plain file is closed: Windows replaces no file held open
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return True


def clear_scratch(archive_dir: Path) -> None:
    """Remove what a stop part-way through sealing left (call it before anything seals)."""
    scratch = archive_dir / SCRATCH
    if scratch.is_dir():
        for leftover in scratch.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()


def _seal_stream(source: BinaryIO, out: BinaryIO, key: bytes) -> None:
    header = MAGIC + key_id(key).encode("ascii") + _NOTE
    prefix = os.urandom(_PREFIX)
    aead = AESGCM(key)
    out.write(header + prefix)
    number = 0
    chunk = source.read(CHUNK)
    while True:
        after = source.read(CHUNK)
        last = not after
        out.write(aead.encrypt(_nonce(prefix, number, last), chunk, header))
        if last:
            return
        chunk, number = after, number + 1


def _chunks(handle: BinaryIO, path: Path, key_file: Path) -> Iterator[bytes]:
    """The file's content as the POS wrote it, chunk by chunk (see `read_archived_file`)."""
    head = handle.read(len(MAGIC))
    if head != MAGIC:  # a plain archived file
        yield head
        while block := handle.read(CHUNK):
            yield block
        return
    wanted = handle.read(_ID_CHARS)
    note = handle.read(len(_NOTE))
    said = wanted.decode("ascii", "replace")
    if note != _NOTE:
        raise SealError(f"{path}: the first line of this sealed archived file is damaged")
    try:
        key = load_key(key_file)
    except SealError as exc:
        raise SealError(f"{path} is sealed with the outbox key (id {said}), but {exc}") from None
    if key_id(key) != said:
        raise SealError(
            f"{path} was sealed with another outbox key (id {said}) than {key_file} holds "
            f"(id {key_id(key)}): restore the key file it was sealed with"
        )
    header = head + wanted + note
    prefix = handle.read(_PREFIX)
    aead = AESGCM(key)
    number = 0
    chunk = handle.read(CHUNK + _TAG)
    while True:
        after = handle.read(CHUNK + _TAG)
        last = not after
        try:
            yield aead.decrypt(_nonce(prefix, number, last), chunk, header)
        except (InvalidTag, ValueError):
            raise SealError(
                f"{path}: this sealed archived file does not open with the outbox key: it "
                "was cut short, damaged or altered"
            ) from None
        if last:
            return
        chunk, number = after, number + 1


def read_archived_file(path: Path, key_file: Path) -> bytes:
    """The archived file `path` as the POS wrote it: sealed, opened with the outbox key in
    `key_file`; plain, as it is. SealError, naming the file and what to do, when a sealed
    file does not open (the key missing or replaced, the file damaged)."""
    with path.open("rb") as handle:
        return b"".join(_chunks(handle, path, key_file))


def copy_archived_file(path: Path, target: Path, key_file: Path) -> None:
    """Write the archived file `path`, as the POS wrote it, to `target` (a chunk at a time)."""
    with path.open("rb") as handle, target.open("wb") as out:
        for block in _chunks(handle, path, key_file):
            out.write(block)
