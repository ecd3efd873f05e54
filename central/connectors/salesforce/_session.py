"""Salesforce's REST session: a token from the OAuth client-credentials or JWT bearer
flow (its `instance_url` is where the calls go), every call named in
`Sforce-Call-Options`, and the org's daily request limit read from each answer, which
holds delivery for `limit_wait_seconds` once too little of it remains."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from .._base import Answered, Exchange, Held, Traced, Unfit
from ._settings import SalesforceSettings

__all__ = [
    "CALL_OPTIONS",
    "Api",
    "Session",
    "answer",
    "call_client",
    "patch",
    "reason",
    "soql_quote",
]

CALL_OPTIONS = "Sforce-Call-Options"

Api = Callable[..., Awaitable[httpx.Response]]
"""The shape of `Session.api`, which the parts that read the org call."""


def call_client(correlation_id: str) -> str:
    """The call options header's value: its `client` field, this program and then the
    record's correlation id (developer.salesforce.com/docs/atlas.en-us.api_rest.meta/
    api_rest/headers_calloptions.htm). The id comes from a store: anything but letters,
    digits, `_`, `.` and `-` becomes `_`, so it can never add a field of its own."""
    return "client=tillbridge/" + re.sub(r"[^A-Za-z0-9_.-]", "_", correlation_id)


def soql_quote(value: str) -> str:
    """A SOQL string literal: backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Session:
    """The token, the instance it names, and the hold the daily limit puts on calls."""

    def __init__(
        self, settings: SalesforceSettings, http: Traced, clock: Callable[[], float]
    ) -> None:
        self._s = settings
        self._http = http
        self._clock = clock
        self._token: str | None = None
        self._instance = ""
        self._hold_until = 0.0
        self._hold_reason = ""

    # -- auth -----------------------------------------------------------------------------

    def _assertion(self) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if not self._s.private_key_file:
            raise Unfit("the JWT flow needs private_key_file")
        key = serialization.load_pem_private_key(
            Path(self._s.private_key_file).read_bytes(), password=None
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        header = _b64(json.dumps({"alg": "RS256"}).encode())
        claims = {
            "iss": self._s.client_id,
            "sub": self._s.username,
            "aud": self._s.jwt_audience.rstrip("/"),
            "exp": int(self._clock()) + 180,
        }
        body = _b64(json.dumps(claims).encode())
        signature = key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{body}.{_b64(signature)}"

    async def _bearer(self, fresh: bool) -> str:
        if self._token is None or fresh:
            if self._s.auth_flow == "jwt":
                form = {
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": self._assertion(),
                }
            else:
                secret = self._s.client_secret.get_secret_value() if self._s.client_secret else ""
                form = {
                    "grant_type": "client_credentials",
                    "client_id": self._s.client_id,
                    "client_secret": secret,
                }
            response = await self._http.request("POST", self._s.token_url, None, data=form)
            if response.status_code != 200:
                raise answer(response, f"token refused: {_oauth_error(response)}")
            body = response.json()
            granted = body.get("scope")
            if isinstance(granted, str) and "api" not in granted.split():
                # The one scope the connector needs; without it every REST call answers
                # 401 "This session is not valid for use with the REST API".
                raise answer(
                    httpx.Response(403, request=response.request),
                    f"the connected app's token has the scopes '{granted}' but not api "
                    "('Manage user data via APIs'), the one this connector needs: add it to "
                    "the connected app",
                )
            self._token = str(body["access_token"])
            self._instance = str(body["instance_url"]).rstrip("/")
        return self._token

    async def api(
        self, method: str, path: str, trace: list[Exchange], **kwargs: Any
    ) -> httpx.Response:
        """An authorised call to the org's REST API (`path` after /services/data/vXX.X)."""
        self._check_hold()
        await self._bearer(False)  # the instance URL comes with the token
        url = f"{self._instance}/services/data/{self._s.api_version}{path}"
        response = await self._http.authorized(method, url, trace, self._bearer, **kwargs)
        self._read_limits(response)
        if response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text:
            self._check_hold()  # this answer is the limit itself: hold, do not burn a try
        return response

    # -- the org's daily request limit ----------------------------------------------------

    def _read_limits(self, response: httpx.Response) -> None:
        """Note `Sforce-Limit-Info: api-usage=used/max`; hold once too little remains, or
        when Salesforce says the limit is reached."""
        info = response.headers.get("sforce-limit-info", "")
        if m := re.search(r"api-usage=(\d+)/(\d+)", info):
            used, most = int(m.group(1)), int(m.group(2))
            left = most - used
            if most and left * 100 <= most * self._s.limit_reserve_percent:
                self.hold(f"daily API requests nearly used up ({used}/{most})")
        if response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text:
            self.hold("daily API request limit reached (REQUEST_LIMIT_EXCEEDED)")

    def hold(self, reason: str) -> None:
        """Refuse every call for `limit_wait_seconds` from now, saying why."""
        self._hold_until = self._clock() + self._s.limit_wait_seconds
        self._hold_reason = reason

    def _check_hold(self) -> None:
        wait = self._hold_until - self._clock()
        if wait > 0:
            raise Held(self._hold_reason, wait)


def _oauth_error(response: httpx.Response) -> str:
    """`status error: description` of an OAuth refusal (it names no secret)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        described = f": {body['error_description']}" if body.get("error_description") else ""
        return f"{response.status_code} {body['error']}{described}"
    return str(response.status_code)


def answer(response: httpx.Response, why: str = "") -> Answered:
    """The refusal of an answer, with `why` or the answer's own errors as its reason."""
    return Answered(response, why or reason(response))


def reason(response: httpx.Response) -> str:
    """`METHOD path answered status: errorCode: message; …` of an answer."""
    request = response.request
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        detail = "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in body)
    else:
        detail = response.text[:200]
    return f"{request.method} {request.url.path} answered {response.status_code}: {detail}"


async def patch(api: Api, path: str, body: dict[str, Any], trace: list[Exchange]) -> None:
    """An update by id, refused unless Salesforce answers 200 or 204."""
    response = await api("PATCH", path, trace, json=body)
    if response.status_code not in (200, 204):
        raise answer(response)
