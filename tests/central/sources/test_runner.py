"""The order-source runner with a stand-in platform: a platform that cannot be read
moves nothing, a page another relay took first is left to it (its refusals counted
once), and a refusal is visible in the relay's stats on a real inbox (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from central.inbox import Inbox
from central.sources import OrderSourceSettings, Page, Refusal, SourceError, SourceRunner
from contract import OnlineOrder
from tests.support.downlink import MemoryDownlink

NOW = datetime(2026, 12, 5, 18, tzinfo=UTC)
SETTINGS = OrderSourceSettings(
    type="commercetools", target="ct", pickup_methods=["click-collect"], interval_seconds=0.01
)


def order(number: str, version: int = 1) -> OnlineOrder:
    return OnlineOrder.model_validate(
        {
            "source": "commercetools",
            "target": "ct",
            "order_id": f"id-{number}",
            "order_number": number,
            "version": version,
            "store": "0042",
            "fulfilment": "pickup",
            "created_at": NOW,
            "currency": "EUR",
            "taxed": "included",
            "lines": [
                {
                    "line_id": "l1",
                    "sku": "4006381333931",
                    "quantity": 1,
                    "unit_price": Decimal("9.99"),
                    "amount": Decimal("9.99"),
                }
            ],
            "tax_total": Decimal("1.60"),
            "total": Decimal("9.99"),
        }
    )


class Scripted:
    """A platform that answers each read with the next of `pages` (an exception is
    raised), and may let `meanwhile` run first, as another relay would."""

    def __init__(self, *pages: Page | Exception, meanwhile: Any = None) -> None:
        self.pages = list(pages)
        self.meanwhile = meanwhile
        self.cursors: list[str | None] = []

    async def page(self, cursor: str | None, now: datetime) -> Page:
        self.cursors.append(cursor)
        if self.meanwhile is not None:
            await self.meanwhile()
            self.meanwhile = None
        nxt = self.pages.pop(0) if self.pages else Page()
        if isinstance(nxt, Exception):
            raise nxt
        return nxt

    async def aclose(self) -> None:
        return None


async def test_a_platform_that_cannot_be_read_moves_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    downlink = MemoryDownlink()
    runner = SourceRunner(
        "web", SETTINGS, Scripted(SourceError("GET /orders answered 503")), downlink
    )
    with caplog.at_level(logging.WARNING, "tillbridge.central.sources"):
        assert await runner.poll_once(now=NOW) == 0
    assert runner.counts.errors == 1
    assert "503" in runner.counts.last_error
    assert await downlink.source_cursor(runner.cursor_name) is None
    assert any(r.getMessage() == "Order source cannot be read." for r in caplog.records)


async def test_a_page_another_relay_took_is_left_to_it() -> None:
    downlink = MemoryDownlink()
    name = "order_source:web"

    async def other_relay() -> None:
        await downlink.advance_cursor(name, None, "t2|b")

    page = Page(
        messages=[order("W-1")],
        refusals=[Refusal("W-2", "web: order W-2: store hamburg is unknown")],
        cursor="t2|b",
        more=True,
    )
    platform = Scripted(page, Page(), meanwhile=other_relay)
    runner = SourceRunner("web", SETTINGS, platform, downlink)
    await runner.poll_once(now=NOW)
    assert runner.counts.lost_race == 1
    # Kept before the cursor moves: the other relay may keep it too, but none loses it.
    assert [r.batch_id for r in downlink.refusals] == ["web:W-2"]
    assert len(downlink.rows["0042"]) == 1, "queued anyway: enqueue is idempotent by key"
    # The next poll reads on from the other relay's cursor.
    await runner.poll_once(now=NOW)
    assert platform.cursors == [None, "t2|b"]


class Combined(MemoryDownlink):
    """The in-memory downlink, with refusals kept by a real inbox."""

    def __init__(self, inbox: Inbox) -> None:
        super().__init__()
        self.inbox = inbox

    async def record_refusal(self, *args: Any, **kwargs: Any) -> None:
        await self.inbox.record_refusal(*args, **kwargs)


async def test_a_refused_order_shows_in_the_relay_stats(inbox: Inbox) -> None:
    refused = Refusal("W-9", "web: order W-9: SKU SKU-X has no POS item in the SKU table", "0042")
    runner = SourceRunner(
        "web", SETTINGS, Scripted(Page(refusals=[refused], cursor="t9|z")), Combined(inbox)
    )
    await runner.poll_once(now=NOW)
    assert (await inbox.stats())["refused"] == 1
    assert runner.counts.refused == 1


async def test_an_unchanged_order_queues_nothing_and_a_changed_one_queues_again() -> None:
    downlink = MemoryDownlink()
    moved = order("W-3", version=2).model_copy(update={"promised_by": NOW})
    platform = Scripted(
        Page(messages=[order("W-3")], cursor="t1|a"),
        Page(messages=[order("W-3", version=2)], cursor="t2|a"),
        Page(messages=[moved], cursor="t3|a"),
    )
    runner = SourceRunner("web", SETTINGS, platform, downlink)
    for _ in range(3):
        await runner.poll_once(now=NOW)
    assert [r.seq for r in downlink.rows["0042"]] == [1, 2]
    assert runner.counts.unchanged == 1


async def test_the_loop_polls_until_stopped() -> None:
    downlink = MemoryDownlink()
    platform = Scripted(Page(messages=[order("W-5")], cursor="t5|a"))
    runner = SourceRunner("web", SETTINGS, platform, downlink)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert len(platform.cursors) > 2
    assert len(downlink.rows["0042"]) == 1
