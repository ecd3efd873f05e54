"""The fan-out over a real inbox (SQLite and PostgreSQL): prices only to the stores of
their channel, customers to every store or their home store, a change that leaves a
store's view as it was queues nothing for it, a store that asks for its data whole gets
every current entity once, and a purge reaches every store."""

from __future__ import annotations

from typing import Any

import pytest

from central.feeds import Fanout, scopes_of
from central.inbox import Inbox, StoreXref
from central.routing import StoreRoute
from contract import (
    CustomerPurge,
    RefCustomer,
    RefItem,
    ResyncDone,
    down_body_adapter,
    reference_entity,
)

from .reference import T0, customer, item, price

STORES = ["0042", "0043", "0044"]


async def fleet(inbox: Inbox) -> None:
    await inbox.put_xref(
        [
            StoreXref("0042", commercetools_channel="berlin", salesforce_location="BER"),
            StoreXref("0043", commercetools_channel="berlin"),
            StoreXref("0044", commercetools_channel="hamburg"),
        ]
    )


async def queued(inbox: Inbox, store: str) -> list[Any]:
    return [down_body_adapter.validate_json(r.body) for r in await inbox.pending_down(store)]


async def test_a_price_of_one_channel_reaches_only_that_channels_stores(inbox: Inbox) -> None:
    await fleet(inbox)
    fanout = Fanout(inbox, {}, {})
    first = item("PEN", 1, price("1.00", "berlin"), price("1.10", "hamburg"), price("1.50"))
    assert await fanout.send(first) == 3
    berlin = (await queued(inbox, "0042"))[0]
    assert isinstance(berlin, RefItem)
    assert [(p.amount, p.channel) for p in berlin.prices] == [
        (first.prices[0].amount, "berlin"),
        (first.prices[2].amount, None),
    ]
    # Hamburg's price changes: only Hamburg's store gets the new version.
    second = item("PEN", 2, price("1.00", "berlin"), price("1.20", "hamburg"), price("1.50"))
    assert await fanout.send(second) == 1
    assert [len(await queued(inbox, s)) for s in STORES] == [1, 1, 2]
    hamburg = (await queued(inbox, "0044"))[-1]
    assert isinstance(hamburg, RefItem)
    assert [str(p.amount) for p in hamburg.prices] == ["1.20", "1.50"]
    # The same state again queues nothing anywhere.
    assert await fanout.send(second) == 0


async def test_the_config_tables_fill_what_the_cross_reference_leaves_out() -> None:
    stores = {
        "0042": StoreRoute.model_validate(
            {"currency": "EUR", "commercetools": {"price_channel": "berlin"}}
        ),
        "default": StoreRoute.model_validate({"commercetools": {"distribution_channel": "web"}}),
    }
    scopes = scopes_of([StoreXref("0042", customer_group="staff")], stores, ["0042", "0050"])
    assert (scopes["0042"].channel, scopes["0042"].customer_group, scopes["0042"].currency) == (
        "berlin",
        "staff",
        "EUR",
    )
    assert scopes["0050"].channel == "web"
    assert "default" not in scopes


async def test_customers_go_to_their_home_store_and_leave_the_one_they_left(
    inbox: Inbox,
) -> None:
    await fleet(inbox)
    fanout = Fanout(inbox, {}, {"crm": "home_store"})
    assert await fanout.send(customer("003A", 1, home="BER")) == 1  # BER is 0042's location
    assert [len(await queued(inbox, s)) for s in STORES] == [1, 0, 0]
    # Moved to 0044 (named by POS store id): 0044 gets the customer, 0042 their purge.
    assert await fanout.send(customer("003A", 2, home="0044")) == 2
    left = (await queued(inbox, "0042"))[-1]
    assert isinstance(left, CustomerPurge)
    assert left.customer_id == "003A"
    assert isinstance((await queued(inbox, "0044"))[0], RefCustomer)
    # A later change at the new home does not purge at the old one again.
    assert await fanout.send(customer("003A", 3, home="0044", tier="silver")) == 1
    assert [len(await queued(inbox, s)) for s in STORES] == [2, 0, 2]


async def test_customers_go_to_every_store_by_default(inbox: Inbox) -> None:
    await fleet(inbox)
    fanout = Fanout(inbox, {}, {})
    assert await fanout.send(customer("003A")) == 3


async def test_a_resync_queues_every_current_entity_once(inbox: Inbox) -> None:
    await fleet(inbox)
    fanout = Fanout(inbox, {}, {})
    for body in (item("PEN", 1, price("1.00", "berlin")), item("INK", 1), customer("003A")):
        await inbox.put_reference(
            reference_entity(body),
            body.kind,
            body.source,
            body.version,
            down_body_adapter.dump_json(body).decode(),
            body.changed_at,
        )
        await fanout.send(body)
    before = len(await queued(inbox, "0042"))
    # Both items, then the word that that is all of them.
    assert await fanout.resync("0042", ["items"], T0) == 3
    again = await queued(inbox, "0042")
    assert len(again) == before + 3
    assert {b.sku for b in again[before:] if isinstance(b, RefItem)} == {"PEN", "INK"}
    done = again[-1]
    assert isinstance(done, ResyncDone)
    assert (done.scope, done.requested_at) == ("items", T0)
    # The same request heard again (another heartbeat, another relay) queues nothing.
    assert await fanout.resync("0042", ["items"], T0) == 0
    assert await fanout.resync("0042", ["customers"], T0) == 2


async def test_a_resync_of_nothing_is_answered_too(inbox: Inbox) -> None:
    await fleet(inbox)
    fanout = Fanout(inbox, {}, {})
    assert await fanout.resync("0043", ["customers"], T0) == 1
    (done,) = await queued(inbox, "0043")
    assert isinstance(done, ResyncDone)
    assert done.scope == "customers"


async def test_a_purge_reaches_every_store_and_forgets_the_customer(inbox: Inbox) -> None:
    await fleet(inbox)
    fanout = Fanout(inbox, {}, {})
    body = customer("003A")
    await inbox.put_reference(
        "customer:crm:003A", "customer", "crm", body.version, body.model_dump_json(), T0
    )
    await fanout.send(body)
    assert await fanout.purge("crm", "003A", now=T0) == 3
    for store in STORES:
        last = (await queued(inbox, store))[-1]
        assert isinstance(last, CustomerPurge)
        assert last.customer_id == "003A"
    assert await inbox.reference_rows("customer") == []


class _Stops:
    """The inbox of a relay that stops after `left` messages were queued."""

    def __init__(self, inbox: Inbox, left: int) -> None:
        self._inbox = inbox
        self.left = left

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inbox, name)

    async def enqueue(self, store: str, kind: str, key: str, body: str) -> tuple[int, bool]:
        if self.left == 0:
            raise RuntimeError("relay stopped")
        self.left -= 1
        return await self._inbox.enqueue(store, kind, key, body)


async def test_a_resync_cut_short_is_finished_by_the_next_heartbeat(inbox: Inbox) -> None:
    await fleet(inbox)
    for sku in ("A", "B", "C"):
        body = item(sku)
        await inbox.put_reference(
            reference_entity(body), "item", body.source, body.version, body.model_dump_json(), T0
        )
    stopping = Fanout(_Stops(inbox, 2), {}, {})  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await stopping.resync("0042", ["items"], T0)
    assert not await inbox.resync_answered("0042", "items", T0.isoformat())
    assert await Fanout(inbox, {}, {}).resync("0042", ["items"], T0) == 2  # C, then done
    *items, done = await queued(inbox, "0042")
    assert sorted(b.sku for b in items) == ["A", "B", "C"]
    assert isinstance(done, ResyncDone)
    assert await inbox.resync_answered("0042", "items", T0.isoformat())
