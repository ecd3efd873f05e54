"""The dashboard as field support uses it with no internet: the API docs from files
installed with the package, Records paged, times with their zone, and an offline store's
last reported backlog and lag on Fleet."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from central.web._docs import swagger_ui_files
from contract import AgentInfo, Heartbeat

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
