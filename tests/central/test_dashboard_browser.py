"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright):
sign in, see a store go offline when its agent process stops, retry an exception and
watch the record post, open a reconciliation day with a seeded difference. A screenshot
of each page lands in the test's folder."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from central.config import CentralBrokerSettings, CentralConfig, InboxSettings
from central.delivery import Delivery
from central.routing import StoreRoute
from central.web import add_user, create_app, serve
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.relay import running_relay

from .connectors import samples
from .test_delivery import Servers, put, target
from .test_recon import closing

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
AGENT = Path(sys.executable).parent / "tillbridge-agent"


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing; `make test` installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield launched
        finally:
            await launched.close()


def _agent_config(tmp_path: Path, broker_url: str) -> Path:
    folder = tmp_path / "store-0042"
    (folder / "pos").mkdir(parents=True)
    config = folder / "agent.toml"
    config.write_text(
        f"""[agent]
store = "0042"
data_dir = "{folder / "data"}"
status_listen = "127.0.0.1:{free_port()}"
[agent.broker]
url = "{broker_url}"
[[agent.sources]]
name = "till"
path = "{folder / "pos"}"
format = "poslog"
[agent.uplink]
heartbeat_seconds = 1
""",
        encoding="utf-8",
    )
    return config


async def _until(check, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.3)


async def test_the_dashboard_in_a_real_browser(
    browser,
    mosquitto: Mosquitto,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    cfg = CentralConfig(
        relay_id="relay-browser",
        data_dir=tmp_path / "relay",
        broker=CentralBrokerSettings(url=mosquitto.url),
        inbox=InboxSettings(url=f"sqlite:///{tmp_path / 'inbox.db'}"),
        targets=[target()],
        stores={"0042": StoreRoute(currency="EUR")},
    )
    add_user(cfg.users_file, "otto", "operator", PASSWORD)
    port = free_port()
    stop = asyncio.Event()
    agent = subprocess.Popen(
        [str(AGENT), "run", "--config", str(_agent_config(tmp_path, mosquitto.url))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    async with running_relay(cfg) as (_, inbox):
        web = asyncio.create_task(serve(create_app(cfg, inbox), f"127.0.0.1:{port}", stop))
        try:
            base = f"http://127.0.0.1:{port}"
            page = await browser.new_page()  # type: ignore[attr-defined]

            # Sign in.
            await page.goto(f"{base}/fleet")
            assert page.url.startswith(f"{base}/login")
            await page.fill("input[name=username]", "otto")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button:has-text('Sign in')")
            await page.wait_for_url(f"{base}/fleet")
            await page.screenshot(path=str(shots / "login-then-fleet.png"), full_page=True)

            # The store is online while its agent runs, offline once it stops.
            async def state() -> str:
                await page.goto(f"{base}/fleet")
                row = page.locator("tr[data-store='0042'] td.state")
                return await row.inner_text() if await row.count() else ""

            async def online() -> bool:
                return await state() == "online"

            await _until(online)
            await page.screenshot(path=str(shots / "fleet-online.png"), full_page=True)
            agent.send_signal(signal.SIGTERM)
            agent.wait(20)

            async def offline() -> bool:
                return await state() == "offline"

            await _until(offline)
            await page.screenshot(path=str(shots / "fleet-offline.png"), full_page=True)

            # A record refused by the target waits as an exception; retry it in the page.
            servers = Servers()
            servers["sandbox"].fail_next_write(400, message="price list missing")
            sales = [samples.sale("1"), samples.sale("2")]
            await put(inbox, *sales)
            await put(inbox, closing([*sales, samples.sale("3")]))  # type: ignore[arg-type]
            delivery = Delivery(cfg, inbox, transport_for=servers)
            await delivery.drain()
            await page.goto(f"{base}/exceptions")
            assert "price list missing" in await page.inner_text("#exceptions")
            await page.screenshot(path=str(shots / "exceptions.png"), full_page=True)
            await page.click("#exceptions button.retry")
            await page.wait_for_url(f"{base}/exceptions?said=*")
            assert "queued again for sandbox" in await page.inner_text(".note")
            await delivery.drain()
            await delivery.aclose()
            await page.goto(f"{base}/exceptions")
            assert "No open exceptions." in await page.inner_text("#exceptions")
            await page.goto(f"{base}/records?q=1")
            await page.click("#records a")
            assert "posted" in await page.inner_text("#deliveries")
            await page.screenshot(path=str(shots / "record.png"), full_page=True)

            # The store reported three sales, the relay has two: the day shows it.
            await page.goto(f"{base}/recon")
            await page.click("#recon-days a")
            differing = page.locator("tr.differs")
            assert await differing.count() >= 1
            assert "sale" in await differing.first.inner_text()
            await page.screenshot(path=str(shots / "recon-day.png"), full_page=True)
            assert servers["sandbox"].puts == 2
        finally:
            stop.set()
            await web
            if agent.poll() is None:
                agent.kill()
    assert sorted(p.name for p in shots.iterdir()) == [
        "exceptions.png",
        "fleet-offline.png",
        "fleet-online.png",
        "login-then-fleet.png",
        "recon-day.png",
        "record.png",
    ]
    keep = Path(os.environ.get("TILLBRIDGE_SCREENSHOTS", "test-output/screenshots"))
    keep.mkdir(parents=True, exist_ok=True)
    for shot in shots.iterdir():
        shutil.copy(shot, keep / shot.name)
