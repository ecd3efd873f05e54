"""`tillbridge-central stats` for people: aligned tables, deliveries one row per target
with a column per state (not a Python dict); `--json` for scripts."""

from __future__ import annotations

from pathlib import Path

from central.cli import render_stats
from central.config import CentralConfig, InboxSettings
from central.delivery import Delivery
from central.inbox import open_inbox
from central.routing import StoreRoute

from .connectors import samples
from .test_delivery import Servers, put, target


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
