"""The plain HTTP target against the connector contract, through a recording fake."""

from __future__ import annotations

import httpx
import pytest

from central.connectors.http import HttpSettings

from . import samples
from .contract import Case, ConnectorContract
from .recording import RecordingServer


def _settings(dry_run: bool) -> HttpSettings:
    return HttpSettings(
        name="sandbox", url="http://sandbox.test", token="static-token-123", dry_run=dry_run
    )


class TestHttpContract(ConnectorContract):
    # A static bearer token and plain PUTs: nothing to refresh, no versions to conflict.
    test_an_expired_token_is_refreshed_once = None  # type: ignore[assignment]
    test_inventory_is_set_absolutely_and_survives_a_concurrent_change = None  # type: ignore[assignment]
    # The record goes whole, movement or level; the receiver applies it (PUT by key).
    test_a_stock_movement_is_applied_once_despite_a_resend_and_a_concurrent_change = None  # type: ignore[assignment]

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


async def test_every_call_carries_the_records_correlation_id() -> None:
    from central.connectors.http import HttpConnector

    server = RecordingServer()
    one, two = samples.routed(samples.sale("6201")), samples.routed(samples.sale("6202"))
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handler)) as client:
        connector = HttpConnector(_settings(False), client)
        await connector.deliver([one, two])
        again = samples.routed(one.record, attempts=1)  # type: ignore[arg-type]
        await connector.deliver([again])
    assert server.correlation_ids == [one.correlation_id, two.correlation_id, one.correlation_id]
