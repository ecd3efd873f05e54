"""Encryption at rest for records that carry customer contact (AES-256-GCM).

The key is 32 random bytes in a file readable only by the service user; it is made
on first start. A sealed body is `nonce || ciphertext`, bound to its idempotency key
so a sealed body cannot be moved to another row unnoticed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["Sealer", "load_or_create_key"]

KEY_BYTES = 32
NONCE_BYTES = 12


class SealError(Exception):
    """The key file is unusable, or a sealed body does not open with it."""


def load_or_create_key(path: Path) -> bytes:
    """The key in `path`; a new one (mode 0600) when the file does not exist yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(KEY_BYTES)
        try:
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600
            )
        except FileExistsError:  # another process made it first
            return load_or_create_key(path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return data
    if len(data) != KEY_BYTES:
        raise SealError(f"{path}: the outbox key must be {KEY_BYTES} bytes, found {len(data)}")
    if sys.platform != "win32" and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # tighten a key someone made readable by others
    return data


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, bound_to: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, bound_to.encode())

    def open(self, sealed: bytes, bound_to: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], bound_to.encode())
        except InvalidTag:
            raise SealError("a sealed record does not open with the outbox key") from None
