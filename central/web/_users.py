"""Dashboard users: a name, a role (viewer or operator: operators may retry and resolve
exceptions), a password stored only as a salted scrypt hash, and a session version, in a
JSON file the relay reads and `tillbridge-central user add|remove` writes (mode 0600).

A session carries the version it was opened under: signing out, a new password and the
user's removal each move the version on, which ends every session opened before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

__all__ = [
    "Role",
    "User",
    "add_user",
    "end_sessions",
    "hash_password",
    "load_users",
    "remove_user",
    "session_secret",
    "verify_password",
]

Role = Literal["viewer", "operator"]
_N, _R, _P = 2**14, 8, 1


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str
    session_version: int = 0


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    salt_text = base64.b64encode(salt).decode()
    return f"scrypt${_N}${_R}${_P}${salt_text}${base64.b64encode(digest).decode()}"


# Checked when the name is unknown, so that a wrong name costs what a wrong password
# costs: the answer's timing does not say which names exist.
_NOBODY = hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: str | None) -> bool:
    """True when `password` matches `stored`; for no user (None) the same work, and False."""
    try:
        scheme, n, r, p, salt, digest = (stored or _NOBODY).split("$")
        if scheme != "scrypt" or (int(n), int(r), int(p)) != (_N, _R, _P):
            return False  # parameters from the file are not trusted to bound the work
        got = hashlib.scrypt(
            password.encode(errors="surrogatepass"),
            salt=base64.b64decode(salt),
            n=_N,
            r=_R,
            p=_P,
            dklen=32,
        )
        return hmac.compare_digest(got, base64.b64decode(digest)) and stored is not None
    except ValueError:
        return False


def load_users(path: Path) -> dict[str, User]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: User(
            name, entry["role"], entry["password_hash"], int(entry.get("session_version", 0))
        )
        for name, entry in data.items()
    }


def _save(path: Path, users: dict[str, User]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    text = json.dumps(
        {
            u.name: {
                "role": u.role,
                "password_hash": u.password_hash,
                "session_version": u.session_version,
            }
            for u in users.values()
        },
        indent=2,
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def add_user(path: Path, name: str, role: Role, password: str) -> bool:
    """Add or replace a user; True when the name was new. A replaced user's sessions end."""
    users = load_users(path)
    old = users.get(name)
    version = old.session_version + 1 if old is not None else 0
    users[name] = User(name, role, hash_password(password), version)
    _save(path, users)
    return old is None


def remove_user(path: Path, name: str) -> bool:
    """Remove a user (their sessions end with them); False when there was none."""
    users = load_users(path)
    if users.pop(name, None) is None:
        return False
    _save(path, users)
    return True


def end_sessions(path: Path, name: str) -> None:
    """End every session of `name` (signing out ends the user's sessions everywhere)."""
    users = load_users(path)
    user = users.get(name)
    if user is not None:
        users[name] = replace(user, session_version=user.session_version + 1)
        _save(path, users)


def session_secret(path: Path) -> str:
    """The cookie-signing key, created (0600) on first use."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key + "\n")
    return key
