"""The outbox key, and encryption at rest with it (AES-256-GCM): records that carry
customer contact, and (`agent.sources`) archived POS files.

The key is 32 random bytes in a file readable only by the service user (mode 0600, or
an ACL on Windows: `agent._acl`); it is made on first start. A sealed body is
`nonce || ciphertext`, bound to its idempotency key so a sealed body cannot be moved to
another row unnoticed. A key's id (`key_id`) names it in what was sealed with it, so a
file that does not open can say whether the key was replaced or the file damaged.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent import _acl

__all__ = ["SealError", "Sealer", "key_id", "load_key", "load_or_create_key"]

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


def load_key(path: Path) -> bytes:
    """The existing key in `path`, never a new one (a reader of what was sealed with it);
    SealError naming the file when it is missing or unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SealError(
            f"the outbox key {path} is missing: restore it from a backup of the agent's "
            "data folder (a new key cannot open what the old one sealed)"
        ) from None
    except OSError as exc:
        raise SealError(f"the outbox key {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) != KEY_BYTES:
        raise SealError(f"{path}: the outbox key must be {KEY_BYTES} bytes, found {len(data)}")
    return data


def key_id(key: bytes) -> str:
    """A short public name of `key` (16 hex digits of a hash; it reveals nothing of it)."""
    return hashlib.sha256(b"tillbridge outbox key id\x00" + key).hexdigest()[:16]


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
