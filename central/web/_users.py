"""Dashboard users: a name, a role (viewer or operator: operators may retry and resolve
exceptions) and a password stored only as a salted scrypt hash, in a JSON file the
relay reads and `tillbridge-central user add` writes (mode 0600)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Role", "User", "add_user", "hash_password", "load_users", "verify_password"]

Role = Literal["viewer", "operator"]
_N, _R, _P = 2**14, 8, 1


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    salt_text = base64.b64encode(salt).decode()
    return f"scrypt${_N}${_R}${_P}${salt_text}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(got, base64.b64decode(digest))


def load_users(path: Path) -> dict[str, User]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: User(name, entry["role"], entry["password_hash"]) for name, entry in data.items()}


def add_user(path: Path, name: str, role: Role, password: str) -> bool:
    """Add or replace a user; True when the name was new."""
    users = load_users(path)
    fresh = name not in users
    users[name] = User(name, role, hash_password(password))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {u.name: {"role": u.role, "password_hash": u.password_hash} for u in users.values()},
            indent=2,
        ),
        encoding="utf-8",
    )
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return fresh


def session_secret(path: Path) -> str:
    """The cookie-signing key, created (0600) on first use."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key + "\n", encoding="utf-8")
    os.chmod(path, 0o600)
    return key
