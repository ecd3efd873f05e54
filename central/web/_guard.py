"""What stands in front of every route: sign-in throttling per user name and per client
address, the CSRF token of a Basic-authenticated caller, and the security headers of
every answer (CSP without inline script, no framing, no MIME sniffing, no referrer to
other sites: same-origin keeps the Origin of the dashboard's own forms for the CSRF check)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict, deque

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SECURITY_HEADERS", "SecurityHeaders", "Throttle", "basic_csrf_token"]

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware that adds `SECURITY_HEADERS` to every answer, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.raw = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.raw if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class Throttle:
    """Failed sign-ins per user name and per client address within a sliding window. Past
    either limit, sign-in is refused (429) until the window has moved on. Memory is bounded:
    at most `keys` names and addresses are remembered, the oldest forgotten first."""

    def __init__(
        self, per_user: int, per_address: int, window_seconds: float, keys: int = 10_000
    ) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.window = window_seconds
        self.keys = keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        found = self._failures.get(key)
        if found is None:
            return deque()
        while found and found[0] <= now - self.window:
            found.popleft()
        return found

    def blocked(self, name: str, address: str, now: float | None = None) -> bool:
        moment = time.monotonic() if now is None else now
        return (
            len(self._recent(f"u:{name}", moment)) >= self.per_user
            or len(self._recent(f"a:{address}", moment)) >= self.per_address
        )

    def failed(self, name: str, address: str, now: float | None = None) -> None:
        moment = time.monotonic() if now is None else now
        for key in (f"u:{name}", f"a:{address}"):
            found = self._failures.get(key)
            if found is None:
                found = self._failures[key] = deque(maxlen=max(self.per_user, self.per_address))
            found.append(moment)
            self._failures.move_to_end(key)
        while len(self._failures) > self.keys:
            self._failures.popitem(last=False)

    def succeeded(self, name: str) -> None:
        self._failures.pop(f"u:{name}", None)


def basic_csrf_token(secret: str, name: str, session_version: int) -> str:
    """The CSRF token of a caller signed in with HTTP Basic (GET /api/v1/csrf): bound to
    the user and their session version, unreadable from another site."""
    message = f"csrf:{name}:{session_version}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
