"""What every route shares: the inbox and config on the app, who is asking (session
cookie or HTTP Basic), the operator check and CSRF protection for changes."""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request

from central.config import CentralConfig
from central.inbox import Inbox

from ._users import User, load_users, verify_password

__all__ = ["Viewer", "csrf_token", "login", "state", "viewer"]


@dataclass(frozen=True)
class Viewer:
    name: str
    role: str
    via: str  # "session" or "basic"

    @property
    def operator(self) -> bool:
        return self.role == "operator"


@dataclass
class AppState:
    config: CentralConfig
    inbox: Inbox


def state(request: Request) -> AppState:
    found: AppState = request.app.state.tillbridge
    return found


def _users(request: Request) -> dict[str, User]:
    return load_users(state(request).config.users_file)


def login(request: Request, name: str, password: str) -> User | None:
    user = _users(request).get(name)
    if user is None or not verify_password(password, user.password_hash):
        return None
    request.session.clear()
    request.session.update(
        {"user": user.name, "role": user.role, "csrf": secrets.token_urlsafe(24)}
    )
    return user


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return str(token)


def current(request: Request) -> Viewer | None:
    name = request.session.get("user")
    if name:
        user = _users(request).get(name)
        if user is not None:  # a removed user's session ends at once
            return Viewer(user.name, user.role, "session")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user = _users(request).get(name)
        if user is not None and verify_password(password, user.password_hash):
            return Viewer(user.name, user.role, "basic")
    return None


def viewer(request: Request) -> Viewer:
    """The signed-in user, or 401 (the pages turn that into the login form)."""
    found = current(request)
    if found is None:
        raise HTTPException(
            401, "sign in", headers={"WWW-Authenticate": 'Basic realm="tillbridge"'}
        )
    return found


def operator(request: Request, form_token: str | None = None) -> Viewer:
    """An operator, with a valid CSRF token unless the call came with HTTP Basic."""
    who = viewer(request)
    if not who.operator:
        raise HTTPException(403, "operators only")
    if who.via == "session":
        sent = form_token or request.headers.get("x-csrf-token")
        if not sent or not secrets.compare_digest(sent, str(request.session.get("csrf", ""))):
            raise HTTPException(403, "missing or wrong CSRF token")
    return who
