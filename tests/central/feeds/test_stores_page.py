"""The dashboard's Stores page: the cross-reference as loaded, what the feeds use per
store (the sheet first, then the config's tables), and counts of the reference data
held — never a customer's fields."""

from __future__ import annotations

from pathlib import Path

import httpx

from central.config import CentralConfig
from central.inbox import StoreXref, open_inbox
from central.web import add_user, create_app
from contract import reference_entity
from tests.central.test_web import PASSWORD, basic, relay, sign_in

from .reference import customer

__all__ = ["relay"]  # the fixture


async def test_the_stores_page_shows_the_cross_reference(relay) -> None:  # type: ignore[no-untyped-def]
    _, inbox, client = relay
    assert (await client.get("/stores")).status_code in (303, 307)  # sign-in first
    await inbox.put_xref([StoreXref("0050", name="Köln", commercetools_channel="cologne")])
    body = customer("003A")
    await inbox.put_reference(
        reference_entity(body),
        "customer",
        "crm",
        body.version,
        body.model_dump_json(),
        body.changed_at,
    )
    await sign_in(client, "vera")
    page = (await client.get("/stores")).text
    assert '<tr data-store="0050"><td>0050</td>' in page
    assert "Köln" in page
    assert "cologne" in page
    assert "1 customers · 0 items" in page
    # 0042 is known only from the config's [central.stores] table (currency EUR).
    assert '<tr data-store="0042"><td>0042</td>' in page
    assert "EUR" in page
    assert "ada@example.test" not in page
    assert "Ada" not in page
    client.cookies.clear()  # signed out: the API wants credentials
    assert (await client.get("/api/v1/stores/xref")).status_code == 401
    (row,) = (await client.get("/api/v1/stores/xref", headers=basic("vera"))).json()
    assert (row["store"], row["name"], row["commercetools_channel"]) == ("0050", "Köln", "cologne")


async def test_the_stores_page_shows_how_far_each_feed_has_read(tmp_path: Path) -> None:
    cfg = CentralConfig.model_validate(
        {
            "data_dir": str(tmp_path),
            "inbox": {"url": f"sqlite:///{tmp_path / 'inbox.db'}"},
            "targets": [
                {"name": "sf", "type": "salesforce", "client_id": "app", "kinds": ["sale"]}
            ],
            "feeds": {"crm": {"type": "salesforce", "target": "sf"}},
        }
    )
    add_user(cfg.users_file, "vera", "viewer", PASSWORD)
    inbox = await open_inbox(cfg.inbox_url)
    try:
        transport = httpx.ASGITransport(app=create_app(cfg, inbox))
        async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as client:
            await sign_in(client, "vera")
            assert "<td>crm</td><td>not read yet</td>" in (await client.get("/stores")).text
            stamp = "2026-12-01T09:00:05.000+0000"
            await inbox.advance_cursor("feed:crm", None, f"{stamp}|003A")
            assert f"<td>crm</td><td>{stamp}</td>" in (await client.get("/stores")).text
    finally:
        await inbox.close()
