"""`tillbridge-central stats` for people: aligned tables, deliveries one row per target
with a column per state (not a Python dict); `--json` for scripts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from central.cli import render_stats
from central.config import CentralConfig, InboxSettings
from central.delivery import Delivery
from central.inbox import open_inbox
from central.routing import StoreRoute
from contract import Heartbeat
from tests.support.online_orders import order, queued

from .connectors import samples
from .test_delivery import Servers, put, target

QUEUED = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)


async def test_deliveries_are_an_aligned_table(tmp_path: Path) -> None:
    cfg = CentralConfig(
        relay_id="relay-stats",
        data_dir=tmp_path,
        inbox=InboxSettings(url=f"sqlite:///{tmp_path / 'inbox.db'}"),
        targets=[target()],
        stores={"0042": StoreRoute(currency="EUR")},
    )
    inbox = await open_inbox(cfg.inbox_url, relay_id=cfg.relay_id)
    try:
        servers = Servers()
        servers["sandbox"].fail_next_write(400, message="price list missing")
        await put(inbox, samples.sale("1"), samples.sale("2"), samples.sale("3"))
        delivery = Delivery(cfg, inbox, transport_for=servers)
        await delivery.drain()
        await delivery.aclose()
        data = await inbox.stats()
    finally:
        await inbox.close()
    counts = data["deliveries"]["sandbox"]
    assert sum(counts.values()) == 3
    text = render_stats(data, "sqlite", width=100)
    assert "{" not in text  # no dict printed
    lines = text.splitlines()
    header = next(line for line in lines if "target" in line and "posted" in line)
    row = next(line for line in lines if "sandbox" in line)
    for state, count in counts.items():
        # Each count stands right-aligned under its state's heading.
        end = header.index(state) + len(state)
        assert row[:end].rstrip().endswith(str(count)), (state, header, row)
        assert row[end - len(str(count)) : end] == str(count), (state, header, row)


async def test_the_downlink_is_a_table_of_stores(tmp_path: Path) -> None:
    inbox = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    try:
        for number in ("A1", "A2", "A3"):
            await inbox.enqueue(*queued(order("0042", number)), now=QUEUED)
        await inbox.settle_down("0042", [1], 0)
        # The store holds A1 and has not written it to the POS: past the alert time.
        await inbox.record_heartbeat(
            Heartbeat(store="0042", state="online", orders_waiting=1, orders_alert=1)
        )
        # A store that holds orders central no longer queues is listed; one that holds
        # none and has no downlink is not.
        await inbox.record_heartbeat(Heartbeat(store="0043", state="online", orders_waiting=3))
        await inbox.record_heartbeat(Heartbeat(store="0044", state="online"))
        data = await inbox.stats()
    finally:
        await inbox.close()
    assert data["downlink"] == {
        "0042": {
            "pending": 2,
            "delivered": 1,
            "oldest_waiting": "2024-05-01T10:15:00+00:00",
            "last_settled": data["downlink"]["0042"]["last_settled"],
            "past_promise": 1,  # A1, promised for 11:00 that day, is at the store
            "orders_waiting": 1,
            "orders_alert": 1,
        },
        "0043": {
            "pending": 0,
            "delivered": 0,
            "oldest_waiting": None,
            "last_settled": None,
            "past_promise": 0,
            "orders_waiting": 3,
            "orders_alert": 0,
        },
    }
    text = render_stats(data, "sqlite", width=100)
    assert "{" not in text
    lines = text.splitlines()
    header = next(line for line in lines if "pending" in line and "not in POS" in line)
    row = next(line for line in lines if "0042" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells == ["0042", "2", "1", "2024-05-01 10:15:00 UTC", "1", "1", "1"], (header, row)
    row = next(line for line in lines if "0043" in line)
    assert [c.strip() for c in row.split("│")[1:-1]] == ["0043", "0", "0", "-", "0", "3", "0"]
    assert not any("0044" in line for line in lines)
