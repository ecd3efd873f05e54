"""Encryption at rest for records that carry customer contact (AES-256-GCM).

The key is 32 random bytes in a file readable only by the service user (mode 0600, or
an ACL on Windows: `agent._acl`); it is made on first start. A sealed body is
`nonce || ciphertext`, bound to its idempotency key so a sealed body cannot be moved to
another row unnoticed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent import _acl

__all__ = ["Sealer", "load_or_create_key"]

log = logging.getLogger("tillbridge.agent.outbox")

KEY_BYTES = 32
NONCE_BYTES = 12


class SealError(Exception):
    """The key file is unusable, or a sealed body does not open with it."""


def load_or_create_key(path: Path) -> bytes:
    """The key in `path`; a new one, readable only by the agent, when there is none yet."""
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
            _acl.protect_file(path)  # before the key is in it (0600 means little on Windows)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return data
    if len(data) != KEY_BYTES:
        raise SealError(f"{path}: the outbox key must be {KEY_BYTES} bytes, found {len(data)}")
    if _acl.exposure(path) is not None:  # tighten a key someone made readable by others
        problem = _acl.try_protect(path, folder=False)
        if problem is not None:
            log.warning(
                "The outbox key is readable by others and could not be protected; "
                "doctor names the fix.",
                extra={"path": str(path), "error": problem},
            )
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
