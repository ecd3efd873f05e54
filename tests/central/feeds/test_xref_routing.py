"""Routing reads the store cross-reference before the config: a store's imported
commercetools store and channel win over the config's tables, the config fills what the
sheet leaves out, and a store only the sheet knows routes from the `default` table."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from central.config import CentralConfig
from central.delivery import Delivery
from central.inbox import StoreXref, open_inbox
from central.routing import Router, stores_with_xref
from central.sources import OrderSourceSettings, Page, SourceRunner, StoreMap
from tests.central.connectors import samples
from tests.central.test_delivery import put


def config() -> CentralConfig:
    target = {
        "name": "shop",
        "type": "commercetools",
        "api_url": "https://api.test",
        "auth_url": "https://auth.test",
        "project_key": "acme",
        "client_id": "relay",
        "client_secret": "secret",
        "kinds": ["sale"],
    }
    return CentralConfig.model_validate(
        {
            "targets": [target],
            "routing": {"payments": {"shop": {"card": "credit-card", "cash": "cash"}}},
            "stores": {
                "0042": {
                    "currency": "EUR",
                    "shop": {"store": "old-key", "supply_channel": "mitte-supply"},
                },
                "default": {"currency": "EUR", "commercetools": {"supply_channel": "central"}},
            },
        }
    )


def route(cfg: CentralConfig, xref: list[StoreXref], store: str) -> dict[str, str]:
    stores = stores_with_xref(cfg.stores, cfg.targets, xref)
    body = samples.sale().model_dump(mode="json") | {"store": store}
    decision = Router(cfg.targets, stores, cfg.routing).decide(1, body)
    assert decision.error is None, decision.error
    found: dict[str, str] = decision.routes["shop"]["route"]
    return found


def test_the_sheet_wins_and_the_config_fills_the_rest() -> None:
    cfg = config()
    sheet = [StoreXref("0042", commercetools_store="berlin-mitte", commercetools_channel="b2c")]
    found = route(cfg, sheet, "0042")
    assert (found["store"], found["distribution_channel"], found["supply_channel"]) == (
        "berlin-mitte",
        "b2c",
        "mitte-supply",
    )
    assert route(cfg, [], "0042")["store"] == "old-key"


def test_a_store_only_the_sheet_knows_starts_from_the_default_table() -> None:
    cfg = config()
    found = route(cfg, [StoreXref("0050", commercetools_store="koeln")], "0050")
    assert (found["store"], found["supply_channel"], found["currency"]) == (
        "koeln",
        "central",
        "EUR",
    )


class _Quiet:
    """A platform with no orders: only the runner's store refresh is under test."""

    def __init__(self, stores: StoreMap) -> None:
        self.store_map = stores

    async def page(self, cursor: str | None, now: datetime) -> Page:
        return Page()

    async def aclose(self) -> None:
        return None


async def test_order_sources_map_platform_stores_by_the_sheet(tmp_path: Path) -> None:
    cfg = config()
    target = cfg.targets[0]
    stores = StoreMap({}, cfg.stores, target, "store")
    assert stores.store_for("old-key") == "0042"
    settings = OrderSourceSettings(type="commercetools", target="shop", pickup_methods=["cc"])
    inbox = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    try:
        runner = SourceRunner("web", settings, _Quiet(stores), inbox, config=cfg, store_map=stores)
        await inbox.put_xref([StoreXref("0050", commercetools_store="koeln")])
        await runner.poll_once()
        assert stores.store_for("koeln") == "0050"
        assert stores.store_for("old-key") == "0042"  # the config still maps the rest
        await inbox.put_xref([StoreXref("0042", commercetools_store="berlin-mitte")])
        await runner.poll_once()
        assert stores.store_for("berlin-mitte") == "0042"
        with pytest.raises(ValueError, match=r"no store's commercetools\.store"):
            stores.store_for("old-key")
    finally:
        await inbox.close()


async def test_delivery_routes_a_store_imported_while_it_runs(tmp_path: Path) -> None:
    cfg = config().model_copy(update={"stores": {"default": config().stores["default"]}})
    inbox = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    delivery = Delivery(cfg, inbox)
    try:
        first, second = samples.sale("1"), samples.sale("2")
        await put(inbox, first)
        await delivery.route_once()
        held = await inbox.record_by_key(first.key)
        assert held is not None
        assert held.state == "exception"  # the default table names no commercetools store
        await inbox.put_xref([StoreXref(samples.STORE, commercetools_store="berlin-mitte")])
        await put(inbox, second)
        assert await delivery.route_once() == 1
        routed = await inbox.record_by_key(second.key)
        assert routed is not None
        assert routed.state == "routed"
    finally:
        await delivery.aclose()
        await inbox.close()
