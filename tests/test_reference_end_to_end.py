"""Reference data to the stores, end to end: the relay's feeds, fan-out, intake and
downlink running over a real SQLite inbox and a real Mosquitto, reading customers from the
Salesforce fake and items from the third-party commercetools mock, and three real
`tillbridge-agent run` processes writing what concerns them into their POS import folders
and answering the till's loopback lookup.

- A contact changed in the CRM reaches its home store's customer import file within a
  poll, and no other store.
- A price change for one channel reaches only that channel's stores.
- A store offline through several changes gets the latest state of each, once.
- A purge removes the customer from every store.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.config import CentralConfig
from central.downlink import DownlinkSender
from central.feeds import Feeds, fanout_for
from central.inbox import Inbox, StoreXref, open_inbox
from central.intake import Intake
from lab.chaos import Process, program_command
from tests.central.feeds.fake_crm import CLIENT_ID, CLIENT_SECRET, MY_DOMAIN, FakeCrm
from tests.support.ct_shop import Admin
from tests.support.ctmock import commercetools_mock
from tests.support.mosquitto import Mosquitto, free_port

PROJECT = "reference-e2e"
CHANNEL = {"0042": "berlin", "0043": "hamburg", "0044": "berlin"}


@pytest.fixture(scope="module")
def shop() -> Iterator[tuple[str, Admin]]:
    with commercetools_mock(PROJECT) as url:
        admin = Admin(url, PROJECT)
        for key in ("berlin", "hamburg"):
            admin.post("/channels", {"key": key, "roles": ["ProductDistribution"]})
        admin.post("/product-types", {"key": "pen", "name": "Pen", "description": "Pens"})
        yield url, admin


def _eur(cents: int, channel_id: str | None = None) -> dict[str, Any]:
    price: dict[str, Any] = {"value": {"currencyCode": "EUR", "centAmount": cents}}
    if channel_id:
        price["channel"] = {"typeId": "channel", "id": channel_id}
    return price


def _publish(admin: Admin, *, berlin: int, hamburg: int) -> None:
    channels = {c["key"]: c["id"] for c in admin.get("/channels")["results"]}
    kind = admin.get("/product-types/key=pen")
    admin.post(
        "/products",
        {
            "key": "pen",
            "name": {"en": "Pen"},
            "slug": {"en": "pen"},
            "productType": {"typeId": "product-type", "id": kind["id"]},
            "masterVariant": {
                "sku": "PEN-BLUE",
                "prices": [
                    _eur(berlin, channels["berlin"]),
                    _eur(hamburg, channels["hamburg"]),
                ],
                "attributes": [],
            },
            "publish": True,
        },
    )


def _reprice(admin: Admin, channel: str, cents: int) -> None:
    found = admin.get("/products/key=pen")
    channel_id = admin.get(f"/channels/key={channel}")["id"]
    prices = found["masterData"]["current"]["masterVariant"]["prices"]
    price = next(p for p in prices if (p.get("channel") or {}).get("id") == channel_id)
    admin.post(
        f"/products/{found['id']}",
        {
            "version": found["version"],
            "actions": [
                {
                    "action": "changePrice",
                    "priceId": price["id"],
                    "price": _eur(cents, channel_id),
                    "staged": False,
                }
            ],
        },
    )


def _ada(crm: FakeCrm, **change: Any) -> None:
    crm.save(
        "003A",
        **{
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Email": "ada@example.test",
            "Loyalty_Id__c": "L-1",
            "Loyalty_Tier__c": "gold",
            "Home_Store__c": "0042",
            **change,
        },
    )


def _central(broker: str, shop_url: str, tmp: Path) -> CentralConfig:
    return CentralConfig.model_validate(
        {
            "relay_id": "relay-ref",
            "data_dir": str(tmp / "relay"),
            "broker": {"url": broker},
            "inbox": {"url": f"sqlite:///{tmp / 'relay' / 'inbox.db'}"},
            "downlink": {"resend_seconds": 3, "poll_seconds": 0.3},
            "targets": [
                {
                    "name": "ct",
                    "type": "commercetools",
                    "api_url": shop_url,
                    "auth_url": shop_url,
                    "project_key": PROJECT,
                    "client_id": "relay",
                    "client_secret": "relay-secret",
                    "kinds": ["sale"],
                },
                {
                    "name": "crm",
                    "type": "salesforce",
                    "login_url": MY_DOMAIN,
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "kinds": ["sale"],
                },
            ],
            "feeds": {
                "catalog": {
                    "type": "commercetools",
                    "target": "ct",
                    "lag_seconds": 0,
                    "interval_seconds": 0.5,
                },
                "crm": {
                    "type": "salesforce",
                    "target": "crm",
                    "lag_seconds": 0,
                    "interval_seconds": 0.5,
                    "customers_to": "home_store",
                    "fields": {
                        "first_name": "FirstName",
                        "last_name": "LastName",
                        "email": "Email",
                        "loyalty_id": "Loyalty_Id__c",
                        "tier": "Loyalty_Tier__c",
                        "home_store": "Home_Store__c",
                    },
                },
            },
        }
    )


def _agent(tmp: Path, store: str, broker: str) -> tuple[Process, int, Path]:
    folder = tmp / store
    (folder / "pos").mkdir(parents=True)
    (folder / "orders-in").mkdir()
    (folder / "reference-in").mkdir()
    port = free_port()
    config = folder / "agent.toml"
    config.write_text(
        f"""[agent]
store = "{store}"
data_dir = "{folder / "data"}"
status_listen = "127.0.0.1:{port}"
[agent.broker]
url = "{broker}"
[[agent.sources]]
name = "till"
path = "{folder / "pos"}"
format = "poslog"
[agent.uplink]
heartbeat_seconds = 1
reconnect_min_seconds = 0.2
reconnect_max_seconds = 1
[agent.downlink]
enabled = true
folder = "{folder / "orders-in"}"
retry_min_seconds = 0.5
[agent.reference]
enabled = true
folder = "{folder / "reference-in"}"
customers = "customer_csv"
items = "micros_csv"
""",
        encoding="utf-8",
    )
    process = Process(
        [*program_command("tillbridge-agent"), "run", "--config", str(config)], folder / "agent.out"
    )
    return process, port, folder / "reference-in"


def _lookup(port: int, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _customer_rows(folder: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(folder.glob("customers*.csv")):
        rows += csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    return [r for r in rows if r["customer_id"] == "003A"]


def _price_files(folder: Path) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(folder.glob("menuitemprices*"))]


async def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(check)
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


class Relay:
    """The relay's reference path in this process: feeds (the CRM fake through its
    transport), fan-out, intake (resync answers) and the downlink sender."""

    def __init__(self, cfg: CentralConfig, inbox: Inbox, crm: FakeCrm) -> None:
        self.cfg, self.inbox = cfg, inbox
        self.stop = asyncio.Event()
        self.feeds = Feeds(
            cfg,
            inbox,
            transport_for=lambda t: (
                httpx.MockTransport(crm.handler) if t.type == "salesforce" else None
            ),
        )
        self.intake = Intake(cfg, inbox, resync=fanout_for(cfg, inbox).resync)
        self.sender = DownlinkSender(cfg, inbox)
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Relay:
        self.tasks = [
            asyncio.create_task(self.feeds.run(self.stop)),
            asyncio.create_task(self.intake.run(self.stop)),
            asyncio.create_task(self.sender.run(self.stop)),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait(self.tasks, timeout=10)
        await self.feeds.aclose()


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[Inbox]:
    (tmp_path / "relay").mkdir()
    opened = await open_inbox(f"sqlite:///{tmp_path / 'relay' / 'inbox.db'}")
    await opened.put_xref(
        [
            StoreXref(store, commercetools_channel=channel, salesforce_location=store)
            for store, channel in CHANNEL.items()
        ]
    )
    yield opened
    await opened.close()


@pytest.mark.timeout(300)
async def test_reference_data_reaches_the_stores_it_concerns_latest_once(
    shop: tuple[str, Admin], mosquitto: Mosquitto, inbox: Inbox, tmp_path: Path
) -> None:
    url, admin = shop
    crm = FakeCrm()
    _ada(crm)
    _publish(admin, berlin=249, hamburg=259)
    agents = {s: _agent(tmp_path, s, mosquitto.url) for s in CHANNEL}
    for process, _, _ in agents.values():
        process.start()
    try:
        async with Relay(_central(mosquitto.url, url, tmp_path), inbox, crm):
            # The customer reaches her home store's import file, and no other store.
            home_port, home_folder = agents["0042"][1], agents["0042"][2]
            rows = await _until(lambda: _customer_rows(home_folder), 60, "Ada at 0042")
            assert [(r["action"], r["tier"], r["loyalty_id"]) for r in rows] == [
                ("U", "gold", "L-1")
            ]
            found = await _until(
                lambda: _lookup(home_port, "/customers?loyalty_id=L-1"), 20, "the lookup"
            )
            assert [c["tier"] for c in found["customers"]] == ["gold"]
            # The item with each store's own channel price.
            for store, (_, port, _) in agents.items():
                item = await _until(lambda p=port: _lookup(p, "/items/PEN-BLUE"), 60, store)
                amounts = [p["amount"] for p in item["prices"]] if "prices" in item else None
                want = "2.49" if CHANNEL[store] == "berlin" else "2.59"
                assert amounts == [want], (store, item)
            for store in ("0043", "0044"):
                assert _customer_rows(agents[store][2]) == []

            # A change in the CRM arrives within a poll; a Berlin price change reaches the
            # Berlin stores only.
            hamburg_before = _price_files(agents["0043"][2])
            _ada(crm, Loyalty_Tier__c="silver")
            _reprice(admin, "berlin", 199)
            await _until(
                lambda: [r["tier"] for r in _customer_rows(home_folder)] == ["gold", "silver"],
                20,
                "the tier change",
            )
            for store in ("0042", "0044"):
                port = agents[store][1]
                await _until(
                    lambda p=port: (
                        (_lookup(p, "/items/PEN-BLUE") or {}).get("prices", [{}])[0].get("amount")
                        == "1.99"
                    ),
                    30,
                    f"the new Berlin price at {store}",
                )
            await asyncio.sleep(2)
            assert _price_files(agents["0043"][2]) == hamburg_before
            assert [
                p["amount"] for p in _lookup(agents["0043"][1], "/items/PEN-BLUE")["prices"]
            ] == ["2.59"]

            # 0042 goes offline through several changes; back, it gets the latest once.
            agents["0042"][0].stop()
            for tier in ("platinum", "diamond"):
                _ada(crm, Loyalty_Tier__c=tier)
                await asyncio.sleep(1.2)
            for cents in (189, 179):
                _reprice(admin, "berlin", cents)
                await asyncio.sleep(1.2)
            agents["0042"][0].start()
            await _until(
                lambda: (
                    [r["tier"] for r in _customer_rows(home_folder)]
                    == ["gold", "silver", "diamond"]
                ),
                60,
                "the latest tier, once",
            )
            item = await _until(
                lambda: (_lookup(home_port, "/items/PEN-BLUE") or {}).get("prices"),
                30,
                "0042's item",
            )
            await _until(
                lambda: (
                    (_lookup(home_port, "/items/PEN-BLUE") or {})
                    .get("prices", [{}])[0]
                    .get("amount")
                    == "1.79"
                ),
                30,
                "the latest Berlin price at 0042",
            )
            prices_at_home = "".join(_price_files(home_folder))
            assert "1.89" not in prices_at_home, "a superseded price was written"

            # A purge removes her from every store.
            await fanout_for(_central(mosquitto.url, url, tmp_path), inbox).purge("crm", "003A")
            for store, (_, port, _) in agents.items():
                await _until(
                    lambda p=port: (
                        (_lookup(p, "/customers?loyalty_id=L-1") or {}).get("customers") == []
                    ),
                    30,
                    f"the purge at {store}",
                )
            assert _customer_rows(home_folder)[-1]["action"] == "D"
            del item
    finally:
        for process, _, _ in agents.values():
            process.stop()
