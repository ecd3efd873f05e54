"""A recording HTTP target: stores each record by the key in its path, counts every
write, and takes the faults the connector contract and the delivery tests inject."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import ClassVar
from urllib.parse import unquote

import httpx

from central.connectors import Routed


class RecordingServer:
    """Stores each record by the key in its path; a repeat overwrites, never adds."""

    RULES: ClassVar[dict[str, str]] = {}
    """Our own sandbox protocol: no platform documents rules for it."""

    def __init__(self, token: str = "static-token-123") -> None:  # noqa: S107 - a test credential
        self.token = token
        self.token_requests = 0
        self.secrets = [token]
        self.records: dict[str, dict[str, object]] = {}
        self.puts = 0
        self._fail: list[tuple[int, dict[str, str], str]] = []
        self._drop = False
        self.down = False
        self.calls = 0
        self.correlation_ids: list[str] = []
        """The X-Correlation-ID of each call ("" where none was sent)."""

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.correlation_ids.append(request.headers.get("x-correlation-id", ""))
        if self.down:
            return httpx.Response(503, json={"error": "down"})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"error": "unauthorized"})
        if request.method == "GET" and request.url.path.startswith("/records/"):
            found = unquote(request.url.path.removeprefix("/records/")) in self.records
            return httpx.Response(200 if found else 404, json={"found": found})
        if request.method != "PUT" or not request.url.path.startswith("/records/"):
            return httpx.Response(404, json={"error": "no such route"})
        if self._fail:
            status, headers, message = self._fail.pop(0)
            return httpx.Response(status, headers=headers, json={"error": message})
        key = unquote(request.url.path.removeprefix("/records/"))
        assert request.headers["idempotency-key"] == key
        self.records[key] = json.loads(request.content)
        self.puts += 1
        if self._drop:
            self._drop = False
            raise httpx.ReadTimeout("answer lost", request=request)
        return httpx.Response(200, json={"stored": True})

    def stored(self, routed: Routed) -> int:
        return 1 if routed.key in self.records else 0

    def payments_of(self, routed: Routed) -> int:
        return 0  # the record goes as it is: the generic target writes no payment

    def order_total(self, routed: Routed) -> Decimal:
        return Decimal(self.records[routed.key]["record"]["total"])  # type: ignore[index]

    def inventory_level(self, routed: Routed) -> Decimal | None:
        body = self.records.get(routed.key)
        return None if body is None else Decimal(body["record"]["quantity"])  # type: ignore[index]

    def fail_next_write(
        self, status: int, *, headers: dict[str, str] | None = None, message: str = ""
    ) -> None:
        self._fail.append((status, headers or {}, message))

    def drop_answer_to_next_write(self) -> None:
        self._drop = True

    def expire_token(self) -> None:  # pragma: no cover - the target has no token to expire
        raise NotImplementedError

    def change_inventory_behind_our_back(self, routed: Routed) -> None:  # pragma: no cover
        raise NotImplementedError
