"""Online orders to a store's POS and their pickup back, on real parts only: the
third-party commercetools mock as the shop, a real Mosquitto, `tillbridge-central run`
reading orders from the mock, `tillbridge-agent run` writing them into the POS import
folder, and the simulated pickup counter recording the hand-over in the till's POSLog.

Each order lands in the import folder once, through the store being offline, the relay
killed with SIGKILL and the broker restarted; each pickup shows in the mock as a
delivery with its shipment state, and a partial pickup leaves the rest of its order
open and visible.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.chaos import Process, program_command
from lab.pos import PickupCounter, PoslogPos
from tests.support.ct_shop import Admin, place, set_up
from tests.support.ctmock import commercetools_mock
from tests.support.mosquitto import Mosquitto, free_port

PROJECT = "downlink-e2e"
STORE = "0042"


@pytest.fixture(scope="module")
def shop() -> Iterator[tuple[str, Admin]]:
    with commercetools_mock(PROJECT) as url:
        yield url, set_up(url, PROJECT)


def _until(check: Callable[[], object], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _relay_config(tmp: Path, broker: str, shop_url: str) -> Path:
    path = tmp / "central.toml"
    path.write_text(
        f"""[central]
relay_id = "relay-e2e"
data_dir = "{tmp / "relay"}"
[central.broker]
url = "{broker}"
[central.inbox]
url = "sqlite:///{tmp / "relay" / "inbox.db"}"
[central.delivery]
poll_seconds = 0.2
[central.downlink]
resend_seconds = 3
poll_seconds = 0.3
[[central.targets]]
name = "ct"
type = "commercetools"
api_url = "{shop_url}"
auth_url = "{shop_url}"
project_key = "{PROJECT}"
client_id = "relay"
client_secret = "relay-secret"
return_payment_state = false
kinds = ["fulfillment"]
retry_min_seconds = 0.5
retry_max_seconds = 2
[central.order_sources.web]
type = "commercetools"
target = "ct"
interval_seconds = 0.5
lag_seconds = 0
pickup_methods = ["click-collect"]
ship_from_store_methods = ["ship-from-store"]
[central.stores."{STORE}"]
country = "DE"
currency = "EUR"
commercetools = {{ store = "berlin-mitte" }}
""",
        encoding="utf-8",
    )
    return path


def _agent_config(tmp: Path, broker: str) -> Path:
    path = tmp / "agent.toml"
    path.write_text(
        f"""[agent]
store = "{STORE}"
data_dir = "{tmp / "store" / "data"}"
status_listen = "127.0.0.1:{free_port()}"
[agent.broker]
url = "{broker}"
[[agent.sources]]
name = "till"
path = "{tmp / "store" / "pos"}"
format = "poslog"
include = ["**/*.xml"]
settle_seconds = 0.3
rescan_seconds = 1
[agent.uplink]
ack_timeout_seconds = 4
reconnect_min_seconds = 0.2
reconnect_max_seconds = 1
heartbeat_seconds = 1
[agent.downlink]
enabled = true
writer = "file"
folder = "{tmp / "store" / "orders-in"}"
format = "json"
retry_min_seconds = 0.5
""",
        encoding="utf-8",
    )
    (tmp / "store" / "pos").mkdir(parents=True)
    (tmp / "store" / "orders-in").mkdir(parents=True)
    return path


def _queued(inbox: Path) -> int:
    """Messages central holds for the store (its own count, read from the inbox file)."""
    if not inbox.exists():
        return 0
    with sqlite3.connect(inbox) as db:
        try:
            (count,) = db.execute("SELECT count(*) FROM downlink").fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(count)


def _order_numbers(imports: Path) -> list[str]:
    """Every order file the agent wrote, whether the POS took it away yet or not."""
    import json

    files = [*imports.glob("*.json"), *(imports / "imported").glob("*.json")]
    return sorted(json.loads(p.read_text())["order_number"] for p in files)


@pytest.mark.timeout(300)
def test_orders_reach_the_store_once_and_their_pickup_reaches_the_shop(
    shop: tuple[str, Admin], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    url, admin = shop
    relay = Process(
        [*program_command("tillbridge-central"), "run", "--config"], tmp_path / "relay.out"
    )
    relay.args.append(str(_relay_config(tmp_path, mosquitto.url, url)))
    agent = Process(
        [
            *program_command("tillbridge-agent"),
            "run",
            "--config",
            str(_agent_config(tmp_path, mosquitto.url)),
        ],
        tmp_path / "agent.out",
    )
    imports = tmp_path / "store" / "orders-in"
    inbox = tmp_path / "relay" / "inbox.db"
    placed: dict[str, dict[str, Any]] = {}
    relay.start()
    agent.start()
    try:
        # Online: two pickup orders reach the import folder.
        for number in ("E2E-1", "E2E-2"):
            placed[number] = place(admin, number)
        # An order delivered to the home address is not the store's.
        place(admin, "E2E-HOME", method="home-delivery")
        _until(lambda: _order_numbers(imports) == ["E2E-1", "E2E-2"], 60, "the first orders")

        # The store goes offline; orders wait at central.
        agent.stop()
        placed["E2E-3"] = place(admin, "E2E-3")
        placed["E2E-4"] = place(admin, "E2E-4", quantity=2, more=[("SKU-PEN-RED", 1)])
        _until(lambda: _queued(inbox) == 4, 60, "central to queue the orders placed offline")
        # The relay dies without a word, and the broker restarts, while the store is away.
        relay.kill()
        mosquitto.restart()
        relay.start()
        agent.start()
        _until(
            lambda: _order_numbers(imports) == ["E2E-1", "E2E-2", "E2E-3", "E2E-4"],
            90,
            "the orders placed while the store was offline",
        )
        time.sleep(4)  # longer than the resend interval: a resend makes no second file
        assert _order_numbers(imports) == ["E2E-1", "E2E-2", "E2E-3", "E2E-4"]

        # The counter hands the orders over; E2E-4's customer takes only the blue pens.
        till = PoslogPos(STORE, tmp_path / "store" / "pos", seed=7)
        counter = PickupCounter(till, imports)
        served = counter.serve(partial=lambda number: number == "E2E-4")
        assert sorted(served) == ["E2E-1", "E2E-2", "E2E-3", "E2E-4"]

        def states() -> dict[str, tuple[str | None, str | None]] | None:
            found = {n: admin.get(f"/orders/{o['id']}") for n, o in placed.items()}
            said = {n: (o.get("shipmentState"), o.get("orderState")) for n, o in found.items()}
            return said if all(s[0] for s in said.values()) else None

        said = _until(states, 90, "the pickups to reach the shop")
        assert said["E2E-1"] == ("Delivered", "Complete")
        assert said["E2E-3"] == ("Delivered", "Complete")
        assert said["E2E-4"] == ("Partial", "Open")
        partial = admin.get(f"/orders/{placed['E2E-4']['id']}")
        (delivery,) = partial["shippingInfo"]["deliveries"]
        blue, red = partial["lineItems"]
        # The blue pens went; the red pen's line is still open, nothing delivered of it.
        assert delivery["items"] == [{"id": blue["id"], "quantity": 2}]
        assert red["quantity"] == 1
        for number in ("E2E-1", "E2E-2", "E2E-3"):
            (whole,) = admin.get(f"/orders/{placed[number]['id']}")["shippingInfo"]["deliveries"]
            assert whole["items"][0]["quantity"] == 3
    finally:
        agent.stop()
        relay.stop()
