"""The relay's API and pages over a real SQLite inbox (httpx.ASGITransport): sign-in,
roles, CSRF, the exception queue, redaction, reconciliation CSV, health and metrics."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from central.config import CentralConfig, InboxSettings
from central.delivery import Delivery
from central.inbox import Inbox, IncomingRecord, open_inbox
from central.routing import StoreRoute
from central.web import add_user, create_app
from contract import Heartbeat, Release
from tests.support.online_orders import order, queued

from .connectors import samples
from .test_delivery import Servers, put, target

PASSWORD = "correct horse battery"


def basic(name: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[tuple[CentralConfig, Inbox, httpx.AsyncClient]]:
    cfg = CentralConfig(
        relay_id="relay-web",
        data_dir=tmp_path,
        inbox=InboxSettings(url=f"sqlite:///{tmp_path / 'inbox.db'}"),
        targets=[target()],
        stores={"0042": StoreRoute(currency="EUR")},
    )
    add_user(cfg.users_file, "vera", "viewer", PASSWORD)
    add_user(cfg.users_file, "otto", "operator", PASSWORD)
    inbox = await open_inbox(cfg.inbox_url, relay_id=cfg.relay_id)
    transport = httpx.ASGITransport(app=create_app(cfg, inbox))
    async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as client:
        yield cfg, inbox, client
    await inbox.close()


async def with_csrf(client: httpx.AsyncClient, name: str) -> dict[str, str]:
    """Basic credentials and the CSRF token a change needs with them."""
    token = (await client.get("/api/v1/csrf", headers=basic(name))).json()["csrf"]
    return {**basic(name), "X-CSRF-Token": token}


async def sign_in(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    """Sign in through the form, with the token the form was served with."""
    form = await client.get("/login")
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    return await client.post("/login", data={"username": name, "password": password, "csrf": token})


async def _exception(cfg: CentralConfig, inbox: Inbox) -> int:
    servers = Servers()
    servers["sandbox"].fail_next_write(400, message="price list missing")
    await put(inbox, samples.sale(customer=True))
    delivery = Delivery(cfg, inbox, transport_for=servers)
    await delivery.drain()
    await delivery.aclose()
    (item,) = await inbox.exceptions()
    return item.id


async def test_health_needs_no_sign_in_and_the_api_does(relay) -> None:  # type: ignore[no-untyped-def]
    _, _, client = relay
    assert (await client.get("/healthz")).json()["status"] == "ok"
    refused = await client.get("/api/v1/fleet")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert (await client.get("/api/v1/fleet", headers=basic("vera"))).status_code == 200
    wrong = {"Authorization": "Basic " + base64.b64encode(b"vera:nope").decode()}
    assert (await client.get("/api/v1/fleet", headers=wrong)).status_code == 401
    page = await client.get("/fleet")
    assert (page.status_code, page.headers["location"]) == (303, "/login?next=/fleet")


async def test_only_operators_retry_and_resolve(relay) -> None:  # type: ignore[no-untyped-def]
    cfg, inbox, client = relay
    exception_id = await _exception(cfg, inbox)
    vera, otto = await with_csrf(client, "vera"), await with_csrf(client, "otto")
    denied = await client.post(f"/api/v1/exceptions/{exception_id}/retry", headers=vera)
    assert denied.status_code == 403
    done = await client.post(f"/api/v1/exceptions/{exception_id}/retry", headers=otto)
    assert done.json() == {"result": "record 1 queued again for sandbox"}
    again = await client.post(f"/api/v1/exceptions/{exception_id}/retry", headers=otto)
    assert again.status_code == 409


async def test_a_session_form_needs_its_csrf_token(relay) -> None:  # type: ignore[no-untyped-def]
    cfg, inbox, client = relay
    exception_id = await _exception(cfg, inbox)
    bad = await sign_in(client, "otto", "nope")
    assert bad.status_code == 401
    signed = await sign_in(client, "otto")
    assert signed.status_code == 303
    assert "httponly" in signed.headers["set-cookie"].lower()
    forged = await client.post(f"/exceptions/{exception_id}/resolve", data={"note": "x"})
    assert forged.status_code == 403
    page = await client.get("/exceptions")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    done = await client.post(
        f"/exceptions/{exception_id}/resolve", data={"note": "Keyed by hand.", "csrf": token}
    )
    assert done.status_code == 303
    assert await inbox.exceptions() == []


async def test_records_are_shown_redacted_with_their_audit(relay) -> None:  # type: ignore[no-untyped-def]
    cfg, inbox, client = relay
    await _exception(cfg, inbox)
    (found,) = (await client.get("/api/v1/records?q=1001", headers=basic("vera"))).json()
    detail = (await client.get(f"/api/v1/records/{found['id']}", headers=basic("vera"))).json()
    text = str(detail)
    assert "jana.example@example.org" not in text
    assert "+49 30 1234567" not in text
    assert [e["step"] for e in detail["audit"]][:2] == ["received", "routed"]
    assert detail["deliveries"][0]["state"] == "exception"


async def test_reconciliation_csv_and_metrics(relay) -> None:  # type: ignore[no-untyped-def]
    _, inbox, client = relay
    await put(inbox, samples.sale("1"))
    day = samples.DAY.isoformat()
    csv = await client.get(f"/api/v1/recon/0042/{day}.csv", headers=basic("vera"))
    assert csv.headers["content-type"].startswith("text/csv")
    assert "kind,sale,,,1,29.97,0,0,yes" in csv.text
    metrics = (await client.get("/metrics")).text
    assert 'tillbridge_records{state="received"} 1.0' in metrics
    assert "tillbridge_exceptions_open 0.0" in metrics
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/exceptions/{exception_id}/retry" in spec["paths"]


async def test_a_busy_address_leaves_the_relay_running_without_its_dashboard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import socket

    from central.web import serve

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        cfg = CentralConfig(
            data_dir=tmp_path, inbox=InboxSettings(url=f"sqlite:///{tmp_path / 'i.db'}")
        )
        inbox = await open_inbox(cfg.inbox_url)
        stop = asyncio.Event()
        await asyncio.wait_for(serve(create_app(cfg, inbox), f"127.0.0.1:{port}", stop), 5)
        await inbox.close()
    finally:
        taken.close()
    assert "Dashboard cannot listen." in caplog.text


async def test_a_group_of_exceptions_is_shown_and_retried_at_once(relay) -> None:  # type: ignore[no-untyped-def]
    cfg, inbox, client = relay
    servers = Servers()
    for _ in range(3):
        servers["sandbox"].fail_next_write(400, message="price list missing")
    await put(inbox, samples.sale("5101"), samples.sale("5102"), samples.sale("5103"))
    delivery = Delivery(cfg, inbox, transport_for=servers)
    await delivery.drain()
    grouped = (await client.get("/api/v1/exceptions/groups", headers=basic("vera"))).json()
    assert [(g["count"], g["target"]) for g in grouped] == [(3, "sandbox")]
    reason = grouped[0]["reason"]
    assert "price list missing" in reason
    denied = await client.post(
        "/api/v1/exceptions/retry",
        params={"reason": reason},
        headers=await with_csrf(client, "vera"),
    )
    assert denied.status_code == 403
    await sign_in(client, "otto")
    page = await client.get("/exceptions")
    assert "Retry all 3" in page.text
    client.cookies.clear()  # the API as a script calls it: basic auth, no session
    done = await client.post(
        "/api/v1/exceptions/retry",
        params={"reason": "PRICE LIST"},
        headers=await with_csrf(client, "otto"),
    )
    assert done.json()["retried"] == 3
    await delivery.drain()
    await delivery.aclose()
    assert await inbox.exceptions() == []
    assert servers["sandbox"].puts == 3


async def test_the_fleet_shows_seqs_a_store_released_after_a_rebuild(relay) -> None:  # type: ignore[no-untyped-def]
    _, inbox, client = relay
    sale = samples.sale("7001")
    received = IncomingRecord(
        seq=85,
        key=sale.key,
        kind=sale.kind,
        correlation_id="c85",
        occurred_at=sale.occurred_at,
        body=sale.model_dump(mode="json"),
    )
    await inbox.insert_batch("0042", [received])
    why = "outbox created again after the earlier one was moved aside"
    rebuilt = Release(from_seq=1, to_seq=84, cause="rebuilt", reason=why)
    await inbox.insert_batch("0042", [], released=[rebuilt])
    (store,) = (await client.get("/api/v1/fleet", headers=basic("vera"))).json()
    assert store["missing"] == 0
    assert (store["release"]["from_seq"], store["release"]["to_seq"]) == (1, 84)
    assert store["release"]["cause"] == "rebuilt"
    await sign_in(client, "vera")
    page = (await client.get("/fleet")).text
    assert "1–84" in page
    assert "outbox rebuilt" in page
    assert why in page  # the reason, as the store gave it


async def test_the_fleet_shows_each_stores_orders_on_the_way_down(relay) -> None:  # type: ignore[no-untyped-def]
    _, inbox, client = relay
    await inbox.record_heartbeat(Heartbeat(store="0042", state="online"))
    late = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
    for number in ("A1", "A2", "A3"):
        await inbox.enqueue(*queued(order("0042", number, promised_by=late)))
    await inbox.settle_down("0042", [], 2)
    # A store that has never reported, with an order waiting for it.
    await inbox.enqueue(*queued(order("0099", "B1")))
    first, second = (await client.get("/api/v1/fleet", headers=basic("vera"))).json()
    assert (first["store"], second["store"], second["state"]) == ("0042", "0099", "unknown")
    down = first["downlink"]
    assert (down["pending"], down["delivered"], down["past_promise"]) == (1, 2, 2)
    assert down["oldest_waiting"] is not None
    assert down["waiting_seconds"] >= 0
    assert (second["downlink"]["pending"], second["last_seen"]) == (1, None)
    await sign_in(client, "vera")
    page = (await client.get("/fleet")).text
    assert "1 pending · 2 delivered" in page
    assert "2 past promise" in page
    assert "never" in page
    metrics = (await client.get("/metrics")).text
    assert 'tillbridge_downlink_pending{store="0042"} 1.0' in metrics
    assert 'tillbridge_downlink_past_promise{store="0042"} 2.0' in metrics
