"""The dashboard as field support uses it with no internet: the API docs from files
installed with the package, Records paged, times with their zone, an offline store's
last reported backlog and lag on Fleet, the orders a store has not written to its POS,
and a day's online orders in reconciliation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from central.web._docs import swagger_ui_files
from contract import AgentInfo, Heartbeat
from tests.support.online_orders import order, queued

from .connectors import samples
from .test_delivery import put
from .test_web import basic, relay, sign_in

__all__ = ["relay"]  # the fixture, shared with test_web


async def test_api_docs_come_from_the_installation_not_a_cdn(relay) -> None:  # type: ignore[no-untyped-def]
    _, _, client = relay
    page = await client.get("/docs")
    assert page.status_code == 200
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert links, page.text
    assert "//" not in page.text.replace("<!doctype html>", "")  # no other host named
    for link in links:
        assert link.startswith("/"), link
        asset = await client.get(link)
        assert asset.status_code == 200, link
        assert len(asset.content) > 100, link
    bundle = next(link for link in links if link.endswith("swagger-ui-bundle.js"))
    assert b"SwaggerUIBundle" in (await client.get(bundle)).content
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy  # still no inline or foreign script
    assert (await client.get("/openapi.json")).json()["paths"]["/api/v1/records"]
    # Swagger UI's licence travels with its files.
    assert "Apache License" in (swagger_ui_files() / "LICENSE").read_text()


async def test_records_page_through_results_and_show_their_zone(relay) -> None:  # type: ignore[no-untyped-def]
    _, inbox, client = relay
    sales = [samples.sale(str(5000 + n)) for n in range(57)]
    await put(inbox, *sales)
    await sign_in(client, "vera")
    first = (await client.get("/records")).text
    keys_first = re.findall(r'<a href="/records/(\d+)">', first)
    assert len(keys_first) == 50
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", first)
    older = re.search(r'<a href="(/records\?[^"]+)" class="older"', first)
    assert older is not None
    second = (await client.get(older.group(1).replace("&amp;", "&"))).text
    keys_second = re.findall(r'<a href="/records/(\d+)">', second)
    assert len(keys_second) == 7
    assert not set(keys_first) & set(keys_second)
    assert 'class="older"' not in second  # the last page
    assert 'class="newest"' in second
    # The API pages the same way.
    api = (await client.get("/api/v1/records?limit=50", headers=basic("vera"))).json()
    rest = (
        await client.get(f"/api/v1/records?before={api[-1]['id']}", headers=basic("vera"))
    ).json()
    assert len(api) + len(rest) == 57
    assert {r["id"] for r in api}.isdisjoint(r["id"] for r in rest)


async def test_an_offline_store_shows_its_last_reported_backlog_and_lag(relay) -> None:  # type: ignore[no-untyped-def]
    _, inbox, client = relay
    then = datetime.now(UTC) - timedelta(minutes=3)
    online = Heartbeat(
        store="0042",
        state="online",
        agent=AgentInfo(id="till-pc", version="0.1.0"),
        backlog_rows=17,
        oldest_unacked_seconds=42.0,
    )
    await inbox.record_heartbeat(online, now=then)
    await inbox.record_heartbeat(Heartbeat(store="0042", state="offline"))  # the last will
    (store,) = (await client.get("/api/v1/fleet", headers=basic("vera"))).json()
    assert (store["state"], store["backlog_rows"], store["lag_seconds"]) == ("offline", 17, 42.0)
    await sign_in(client, "vera")
    page = (await client.get("/fleet")).text
    row = page.split('data-store="0042"')[1].split("</tr>")[0]
    backlog = row.split('class="backlog">')[1].split("</td>")[0]
    assert backlog.startswith("17 (last reported ")
    assert backlog.endswith(" UTC)")
    assert row.split('class="lag">')[1].startswith("42 s (last reported ")


async def test_fleet_shows_the_orders_a_store_has_not_written_to_the_pos(relay) -> None:  # type: ignore[no-untyped-def]
    _, inbox, client = relay
    await inbox.record_heartbeat(
        Heartbeat(store="0042", state="online", orders_waiting=3, orders_alert=1)
    )
    await inbox.record_heartbeat(Heartbeat(store="0043", state="online", orders_waiting=2))
    await inbox.record_heartbeat(Heartbeat(store="0044", state="offline"))  # never reported
    await sign_in(client, "vera")
    page = (await client.get("/fleet")).text
    assert "<th>Orders down</th><th>Orders at store</th>" in page
    at_store = r'<tr data-store="(\d+)".*?(<td class="at-store[^"]*".*?</td>)'
    cells = dict(re.findall(at_store, page, re.S))
    assert set(cells) == {"0042", "0043", "0044"}
    # An order past the agent's alert time is a problem, like the other fleet problems.
    assert 'class="at-store bad"' in cells["0042"]
    assert "3 not yet in POS · 1 alert" in " ".join(cells["0042"].split())
    assert "bad" not in cells["0043"]
    assert "2 not yet in POS" in cells["0043"]
    assert "alert" not in cells["0043"]
    assert ">–</td>" in cells["0044"]
    fleet = (await client.get("/api/v1/fleet", headers=basic("vera"))).json()
    assert {s["store"]: (s["orders_waiting"], s["orders_alert"]) for s in fleet} == {
        "0042": (3, 1),
        "0043": (2, 0),
        "0044": (None, None),
    }


async def test_the_recon_day_shows_its_online_orders(relay) -> None:  # type: ignore[no-untyped-def]
    _, inbox, client = relay
    await put(inbox, samples.sale("1"))
    at = datetime.combine(samples.DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
    for number in ("W1", "W2", "W3"):
        await inbox.enqueue(*queued(order("0042", number)), now=at)
    await inbox.enqueue(*queued(order("0042", "W9")), now=at + timedelta(days=1))
    await inbox.settle_down("0042", [], 2, now=at)
    await inbox.mark_fulfilled("0042", "W1", "partially_picked_up")
    await sign_in(client, "vera")
    day = samples.DAY.isoformat()
    page = (await client.get(f"/recon/0042/{day}")).text
    assert "<h2>Online orders</h2>" in page
    figures = dict(re.findall(r'<tr data-figure="(\w+)"><td>[^<]*</td><td>(\d+)</td>', page))
    assert figures == {
        "received": "3",
        "handed_to_store": "2",
        "fulfilled": "1",
        "picked_up": "0",
        "partially_picked_up": "1",
        "shipped": "0",
        "cancelled": "0",
        "cancelled_online": "0",
    }
    assert "fulfilled: partially picked up" in page
    csv = (await client.get(f"/api/v1/recon/0042/{day}.csv", headers=basic("vera"))).text
    assert "kind,sale,,,1,29.97,0,0,yes" in csv  # the day's lines as before
    assert f"0042,{day},,orders,received,,,3,,,,no" in csv
    assert f"0042,{day},,orders,partially_picked_up,,,1,,,,no" in csv
    orders = (await client.get(f"/api/v1/recon/0042/{day}/orders", headers=basic("vera"))).json()
    assert orders == {
        "store": "0042",
        "day": day,
        "received": 3,
        "handed_to_store": 2,
        "fulfilled": 1,
        "by_status": {"picked_up": 0, "partially_picked_up": 1, "shipped": 0, "cancelled": 0},
        "cancelled_online": 0,
    }
    # A day without orders says so, and its CSV has no order rows.
    quiet = (samples.DAY - timedelta(days=1)).isoformat()
    assert "No online order was queued" in (await client.get(f"/recon/0042/{quiet}")).text
    csv = (await client.get(f"/api/v1/recon/0042/{quiet}.csv", headers=basic("vera"))).text
    assert ",orders," not in csv
