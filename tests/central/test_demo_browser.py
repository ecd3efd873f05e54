"""The demo's data in a real headless Chromium with no network but the relay: sign in,
walk Fleet (the offline store with its last reported backlog), Records (paged, times with
their zone), one record, Exceptions (the item the SKU table lacks; retry it), a
reconciled business day, the downlink (the sandbox shop's orders in the store's import
folder once each, handed over, their fulfilment posted to the dry-run target) and the
API docs. Screenshots land in test-output/."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest

from agent.parsers import ParseContext, parse_bytes
from contract import Fulfillment
from lab.demo import PICKUP_STORE, TARGET, UNMAPPED, Demo, import_folder
from tests.support.mosquitto import free_port

from .test_dashboard_browser import _until, browser

__all__ = ["browser"]  # the fixture, shared with the other browser test


# The walk waits on real time: the outage to begin, the business day to close (30 s in)
# and delivery to catch up, each step with its own bound below; 82 s on a quiet host.
@pytest.mark.timeout(300)
async def test_the_demo_in_a_real_browser_offline(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    demo = Demo(
        tmp_path / "demo", outage_after=20, outage_for=90, close_in=30, web_port=free_port()
    )
    stop = threading.Event()

    def tills() -> None:
        while not stop.is_set():
            demo.step()
            stop.wait(0.5)

    demo.start()
    writer = threading.Thread(target=tills, daemon=True)
    writer.start()
    base = f"http://127.0.0.1:{demo.web_port}"
    elsewhere: list[str] = []
    try:
        context = await browser.new_context()

        async def only_the_relay(route, request) -> None:  # type: ignore[no-untyped-def]
            if request.url.startswith(base + "/"):
                await route.continue_()
            else:
                elsewhere.append(request.url)
                await route.abort()

        await context.route("**/*", only_the_relay)
        page = await context.new_page()

        async def answers() -> bool:
            try:
                await page.goto(f"{base}/login")
            except Exception:  # noqa: BLE001 - the relay is still starting
                return False
            return True

        await _until(answers, timeout=60)
        await page.fill("input[name=username]", "demo")
        await page.fill("input[name=password]", demo.password)
        await page.click("button:has-text('Sign in')")
        await page.wait_for_url(f"{base}/fleet")

        # Fleet: three stores; the cut-off one offline, with the backlog it last reported.
        async def offline_row() -> str:
            await page.goto(f"{base}/fleet")
            row = page.locator(f"tr[data-store='{Demo.OFFLINE}']")
            if not await row.count() or await row.locator("td.state").inner_text() != "offline":
                return ""
            return await row.locator("td.backlog").inner_text()

        backlog = await _until_value(offline_row, timeout=60)
        assert re.fullmatch(r"\d+ \(last reported \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", backlog)
        assert await page.locator("#fleet tbody tr[data-store]").count() == 3
        await page.screenshot(path=str(shots / "demo-fleet-offline.png"), full_page=True)

        # Records: newest first, 50 a page, times with their zone; one record.
        await page.goto(f"{base}/records")
        assert await page.locator("#records tbody tr").count() == 50
        assert "UTC" in await page.locator("#records tbody tr td").first.inner_text()
        await page.click("#record-pages a.older")
        assert await page.locator("#records tbody tr a").count() >= 1
        await page.screenshot(path=str(shots / "demo-records.png"), full_page=True)
        await page.locator("#records tbody tr a").first.click()
        await page.wait_for_url(re.compile(r".*/records/\d+$"))
        assert await page.locator("#deliveries tbody tr").count() >= 1
        assert "UTC" in await page.inner_text("#audit")
        await page.screenshot(path=str(shots / "demo-record.png"), full_page=True)

        # Exceptions: the sale with the item the SKU table lacks, grouped by reason; retry.
        async def unmapped() -> bool:
            await page.goto(f"{base}/exceptions")
            return UNMAPPED[0] in await page.inner_text("#exceptions")

        await _until(unmapped, timeout=60)
        # Grouped by cause, numbers folded: one group for every SKU the table lacks.
        assert "SKU GW-# (line #) has no mapping" in await page.inner_text("#exception-groups")
        await page.screenshot(path=str(shots / "demo-exceptions.png"), full_page=True)
        row = page.locator("#exceptions tbody tr", has_text=UNMAPPED[0]).first
        await row.locator("button.retry").click()
        await page.wait_for_url(f"{base}/exceptions?said=*")
        assert re.fullmatch(
            r"record \d+ goes through routing again", await page.inner_text(".note")
        )

        # Reconciliation: the business day the demo closed, POS beside received and posted.
        async def closed_day() -> bool:
            await page.goto(f"{base}/recon")
            return await page.locator("#recon-days a").count() > 0

        await _until(closed_day, timeout=150)
        await page.locator("#recon-days a").first.click()
        day = page.url
        headings = await page.locator("table.recon thead th").all_inner_texts()
        assert headings[2:] == ["POS", "Received", "commerce-dry-run"]

        async def reconciled() -> bool:
            # The store's own end-of-day counts and totals, what central received and what
            # the target confirmed agree line by line once delivery has caught up.
            await page.goto(day)
            rows = await page.locator("table.recon tbody tr").all()
            cells = [await row.locator("td").all_inner_texts() for row in rows]
            return bool(cells) and all(c[2] == c[3] == c[4] for c in cells)

        await _until(reconciled, timeout=90)
        assert "0 differences" in await page.inner_text("h2")
        sale = page.locator("table.recon tbody tr", has_text="sale").first
        assert (await sale.locator("td").all_inner_texts())[2] not in ("", "–")
        await page.screenshot(path=str(shots / "demo-recon-day.png"), full_page=True)

        # The downlink: the sandbox shop's orders went down to store 0042 (Fleet counts
        # them), each into its import folder once; the till handed them over and each
        # fulfilment was posted to the dry-run target the order came from. The tills stop
        # first, so the folder holds still while it is read.
        stop.set()
        writer.join(10)

        async def orders_down() -> str:
            await page.goto(f"{base}/fleet")
            cell = page.locator(f"tr[data-store='{PICKUP_STORE}'] td.downlink")
            text = " ".join((await cell.inner_text()).split())
            found = re.search(r"(\d+) delivered", text)
            return text if found and int(found.group(1)) >= 1 else ""

        down = await _until_value(orders_down, timeout=30)
        assert re.match(r"\d+ pending · \d+ delivered", down)
        await page.screenshot(path=str(shots / "demo-fleet-orders-down.png"), full_page=True)
        folder = import_folder(demo.workdir)
        files = [*folder.glob("*.json"), *(folder / "imported").glob("*.json")]
        written = [json.loads(f.read_text())["order_number"] for f in files]
        served = list(demo.counter.handed)
        assert served, "the till handed over an order"
        assert sorted(set(written)) == sorted(written), "each order written once"
        assert set(served) <= set(written) <= set(demo.shop.queued)
        first = _fulfilment(demo.counter.slips[served[0]])

        async def fulfilment_posted() -> bool:
            await page.goto(f"{base}/records?{urlencode({'q': first.key})}")
            return await page.locator("#records tbody td.state").all_inner_texts() == ["posted"]

        await _until(fulfilment_posted, timeout=30)
        await page.locator("#records tbody tr a").first.click()
        delivered = await page.locator("#deliveries tbody tr td").all_inner_texts()
        assert delivered[:2] == [TARGET, "posted"]
        # The audit keeps what the dry run would have sent, the order named in it.
        sent = await page.text_content("#audit") or ""
        assert "dry_run" in sent
        assert first.order_number in sent
        await page.screenshot(path=str(shots / "demo-fulfilment.png"), full_page=True)

        # The API docs render from the relay's own files.
        await page.goto(f"{base}/docs")
        await page.wait_for_selector(".opblock", timeout=20_000)
        assert "/api/v1/records" in await page.inner_text("#swagger-ui")
        await page.screenshot(path=str(shots / "demo-api-docs.png"), full_page=True)
        await context.close()
    finally:
        stop.set()
        writer.join(10)
        await asyncio.to_thread(demo.stop)
    assert elsewhere == []  # nothing was asked of any other host
    keep = Path(os.environ.get("TILLBRIDGE_SCREENSHOTS", "test-output/screenshots"))
    keep.mkdir(parents=True, exist_ok=True)
    for shot in shots.iterdir():
        shutil.copy(shot, keep / shot.name)


async def _until_value(check, timeout: float) -> str:  # type: ignore[no-untyped-def]
    found: list[str] = []

    async def done() -> bool:
        value = await check()
        if value:
            found.append(value)
        return bool(value)

    await _until(done, timeout=timeout)
    return found[-1]


def _fulfilment(slip: bytes) -> Fulfillment:
    """The fulfilment record a hand-over's POSLog holds, as the agent's parser reads it."""
    context = ParseContext(file_name="handover.xml", sha256="0" * 64, store=PICKUP_STORE)
    (record,) = parse_bytes(slip, "poslog", context=context)
    assert isinstance(record, Fulfillment)
    return record
