"""Adobe Commerce authentication: an integration's access token sent OAuth 1.0a-signed
(RFC 5849, HMAC-SHA256) or as a bearer token where the shop allows that, or an admin
user's token, renewed before its four hours run out (refused while two-factor
authentication is on)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from .._base import Exchange, Traced
from ._answers import answer
from ._settings import AdobeCommerceSettings

__all__ = ["ADMIN_TOKEN_SECONDS", "TWO_FACTOR", "Session", "oauth1_signature"]

ADMIN_TOKEN_SECONDS = 4 * 3600.0
TWO_FACTOR = "2fa provider-specific endpoints"


class Session:
    """Authorised calls to one shop's REST API, `/rest/{store_code}/V1`."""

    def __init__(
        self,
        settings: AdobeCommerceSettings,
        http: Traced,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self._s = settings
        self._http = http
        self._clock = clock
        self._wall = wall
        self._rest = f"{settings.base_url.rstrip('/')}/rest/{settings.store_code}/V1"
        self._static = settings.token.get_secret_value() if settings.token else None
        self._admin: str | None = None
        self._admin_until = 0.0

    async def _auth(self, renew: bool) -> str:
        if self._static is not None:
            return self._static
        if renew or self._admin is None or self._clock() >= self._admin_until:
            password = self._s.password.get_secret_value() if self._s.password else ""
            response = await self._http.request(
                "POST",
                f"{self._rest}/integration/admin/token",
                None,  # the answer is the token itself: it never goes into the audit
                json={"username": self._s.username or "", "password": password},
            )
            if response.status_code != 200:
                if TWO_FACTOR in response.text:
                    raise answer(
                        response,
                        "admin tokens are refused while two-factor authentication is on: "
                        "use an integration's token (token_file) instead of username and "
                        "password",
                    )
                raise answer(response, f"admin token refused: {response.status_code}")
            self._admin = str(response.json())
            self._admin_until = self._clock() + ADMIN_TOKEN_SECONDS - 300
        return self._admin

    async def send(
        self, method: str, path: str, trace: list[Exchange], **kwargs: Any
    ) -> httpx.Response:
        url = f"{self._rest}{path}"
        if self._static is not None and self._s.integration_auth == "oauth1":
            params: Mapping[str, str] = kwargs.pop("params", None) or {}
            headers = {"Authorization": self._oauth1(method, url, params)}
            return await self._http.request(
                method, url, trace, params=params, headers=headers, **kwargs
            )
        return await self._http.authorized(method, url, trace, self._auth, **kwargs)

    def _oauth1(self, method: str, url: str, params: Mapping[str, str]) -> str:
        """An OAuth 1.0a `Authorization` header (RFC 5849, HMAC-SHA256) for one call with
        the integration's consumer and access token credentials."""
        consumer = self._s.consumer_secret.get_secret_value() if self._s.consumer_secret else ""
        secret = self._s.token_secret.get_secret_value() if self._s.token_secret else ""
        oauth = {
            "oauth_consumer_key": self._s.consumer_key,
            "oauth_nonce": secrets.token_hex(16),
            "oauth_signature_method": "HMAC-SHA256",
            "oauth_timestamp": str(int(self._wall())),
            "oauth_token": self._static or "",
            "oauth_version": "1.0",
        }
        oauth["oauth_signature"] = oauth1_signature(
            method, url, {**params, **oauth}, consumer, secret
        )
        return "OAuth " + ", ".join(f'{k}="{_pct(v)}"' for k, v in sorted(oauth.items()))


def oauth1_signature(
    method: str, url: str, params: Mapping[str, str], consumer_secret: str, token_secret: str
) -> str:
    """The HMAC-SHA256 signature of RFC 5849 section 3.4 over the method, the URL without
    its query, and every query and oauth_ parameter, sorted."""
    pairs = sorted((_pct(k), _pct(v)) for k, v in params.items())
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    base = "&".join(_pct(p) for p in (method.upper(), url.split("?", 1)[0], normalized))
    key = f"{_pct(consumer_secret)}&{_pct(token_secret)}".encode()
    digest = hmac.new(key, base.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _pct(value: str) -> str:
    return quote(value, safe="-._~")
