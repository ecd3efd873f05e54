"""The plain HTTP target against the connector contract, through a recording fake."""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import unquote

import httpx
import pytest

from central.connectors import Routed
from central.connectors.http import HttpSettings

from . import samples
from .contract import Case, ConnectorContract


class RecordingServer:
    """Stores each record by the key in its path; a repeat overwrites, never adds."""

    def __init__(self, token: str = "static-token-123") -> None:  # noqa: S107 - a test credential
        self.token = token
        self.token_requests = 0
        self.secrets = [token]
        self.records: dict[str, dict[str, object]] = {}
        self.puts = 0
        self._fail: list[tuple[int, dict[str, str], str]] = []
        self._drop = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"error": "unauthorized"})
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


def _settings(dry_run: bool) -> HttpSettings:
    return HttpSettings(
        name="sandbox", url="http://sandbox.test", token="static-token-123", dry_run=dry_run
    )


class TestHttpContract(ConnectorContract):
    # A static bearer token and plain PUTs: nothing to refresh, no versions to conflict.
    test_an_expired_token_is_refreshed_once = None  # type: ignore[assignment]
    test_inventory_is_set_absolutely_and_survives_a_concurrent_change = None  # type: ignore[assignment]

    @pytest.fixture
    def case(self) -> Case:
        return Case(settings=_settings, fake=RecordingServer)


async def test_the_record_goes_whole_with_its_routing() -> None:
    from central.connectors.http import HttpConnector

    server = RecordingServer()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handler)) as client:
        connector = HttpConnector(_settings(False), client)
        sale = samples.routed(samples.sale())
        result = await connector.deliver([sale])
    assert [o.id for o in result.accepted] == [sale.id]
    body = server.records[sale.key]
    assert body["route"]["store"] == "berlin-mitte"  # type: ignore[index]
    assert body["record"]["total"] == "29.97"  # type: ignore[index]
    assert body["skus"] == samples.SKUS


async def test_a_wrong_token_is_retried_not_rejected() -> None:
    from central.connectors.http import HttpConnector

    server = RecordingServer(token="the-right-one")
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handler)) as client:
        connector = HttpConnector(_settings(False), client)
        result = await connector.deliver([samples.routed(samples.sale())])
    assert len(result.retry) == 1
    assert result.retry[0].status == 401
    assert not server.records
