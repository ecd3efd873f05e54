"""What every route shares: the inbox and config on the app, who is asking (a session
cookie anywhere, HTTP Basic on /api/v1 only), the operator check, and CSRF protection on
every change whatever the sign-in: a session's form token, or for Basic the token of
GET /api/v1/csrf in an X-CSRF-Token header; a request from another origin is refused."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from central.config import CentralConfig
from central.inbox import Inbox

from ._guard import Throttle, basic_csrf_token
from ._users import User, end_sessions, load_users, verify_password

__all__ = [
    "AppState",
    "Viewer",
    "changing",
    "csrf_token",
    "current",
    "login",
    "logout",
    "operator",
    "state",
    "viewer",
]

log = logging.getLogger("tillbridge.central.web")

API_PREFIX = "/api/v1/"


@dataclass(frozen=True)
class Viewer:
    name: str
    role: str
    via: str  # "session" or "basic"
    session_version: int = 0

    @property
    def operator(self) -> bool:
        return self.role == "operator"


@dataclass
class AppState:
    config: CentralConfig
    inbox: Inbox
    secret: str = ""
    throttle: Throttle = field(default_factory=lambda: Throttle(5, 20, 900))


def state(request: Request) -> AppState:
    found: AppState = request.app.state.tillbridge
    return found


def _users(request: Request) -> dict[str, User]:
    return load_users(state(request).config.users_file)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Throttled(HTTPException):
    def __init__(self) -> None:
        super().__init__(429, "too many failed sign-ins; try again later", {"Retry-After": "60"})


async def _check(request: Request, name: str, password: str) -> User | None:
    """The user when name and password match. The same work whether the name exists or
    not, and whether the caller is throttled or not; a throttled caller gets 429."""
    app = state(request)
    user = _users(request).get(name)
    blocked = app.throttle.blocked(name, _address(request))
    # scrypt is meant to be slow: off the event loop, which keeps serving meanwhile.
    good = await asyncio.to_thread(verify_password, password, user.password_hash if user else None)
    # A name that is no user may be a password typed in the wrong field: never logged.
    said = {"event": "security", "user": user.name if user else "(unknown)"}
    if blocked:
        log.warning(
            "Security event: sign-in throttled.", extra={**said, "address": _address(request)}
        )
        raise Throttled()
    if not good or user is None:
        app.throttle.failed(name, _address(request))
        log.warning("Security event: sign-in failed.", extra={**said, "address": _address(request)})
        return None
    app.throttle.succeeded(name)
    return user


async def login(request: Request, name: str, password: str) -> User | None:
    user = await _check(request, name, password)
    if user is None:
        return None
    request.session.clear()
    request.session.update(
        {"user": user.name, "ver": user.session_version, "csrf": secrets.token_urlsafe(24)}
    )
    return user


def logout(request: Request, who: Viewer) -> None:
    """End this user's sessions everywhere (a copied cookie stops working too)."""
    request.session.clear()
    end_sessions(state(request).config.users_file, who.name)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return str(token)


async def current(request: Request) -> Viewer | None:
    name = request.session.get("user")
    if name:
        user = _users(request).get(name)
        # A removed user, a new password or a sign-out elsewhere ends the session at once.
        if user is not None and request.session.get("ver") == user.session_version:
            return Viewer(user.name, user.role, "session", user.session_version)
        request.session.clear()
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic ") and request.url.path.startswith(API_PREFIX):
        try:
            name, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        found = await _check(request, name, password)
        if found is not None:
            return Viewer(found.name, found.role, "basic", found.session_version)
    return None


async def viewer(request: Request) -> Viewer:
    """The signed-in user, or 401 (the pages turn that into the login form)."""
    found = await current(request)
    if found is None:
        headers = (
            {"WWW-Authenticate": 'Basic realm="tillbridge"'}
            if request.url.path.startswith(API_PREFIX)
            else None
        )
        raise HTTPException(401, "sign in", headers=headers)
    return found


def expected_csrf(request: Request, who: Viewer) -> str:
    if who.via == "session":
        return str(request.session.get("csrf", ""))
    return basic_csrf_token(state(request).secret, who.name, who.session_version)


def same_origin(request: Request) -> None:
    """Refuse a change whose Origin (or, without one, Referer) names another site."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin and origin != "null":
        if urlsplit(origin).netloc != request.headers.get("host", ""):
            raise HTTPException(403, "cross-site request refused")
    elif origin == "null":
        raise HTTPException(403, "cross-site request refused")


def check_csrf(request: Request, who: Viewer, form_token: str | None = None) -> None:
    same_origin(request)
    sent = form_token or request.headers.get("x-csrf-token") or ""
    expected = expected_csrf(request, who)
    if not sent or not expected or not secrets.compare_digest(sent, expected):
        log.warning(
            "Security event: change refused without its CSRF token.",
            extra={"event": "security", "user": who.name, "path": request.url.path},
        )
        raise HTTPException(403, "missing or wrong CSRF token")


async def changing(request: Request, form_token: str | None = None) -> Viewer:
    """A signed-in user making a change, with a valid CSRF token however they signed in."""
    who = await viewer(request)
    check_csrf(request, who, form_token)
    return who


async def operator(request: Request, form_token: str | None = None) -> Viewer:
    """An operator making a change, with a valid CSRF token however they signed in."""
    who = await viewer(request)
    if not who.operator:
        raise HTTPException(403, "operators only")
    check_csrf(request, who, form_token)
    return who
