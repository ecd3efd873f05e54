"""The reference role of the inbox, one suite on SQLite and PostgreSQL: the latest state
per entity (an older one read late changes nothing), per-store digests, resync requests
claimed once also by two relays at once, and the store cross-reference."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from central.inbox import Inbox, StoreXref, open_inbox
from contract import down_body_adapter, reference_entity

from .reference import T0, customer, item, price


async def put(inbox: Inbox, body: object) -> bool:
    from contract import RefCustomer, RefItem

    assert isinstance(body, RefCustomer | RefItem)
    return await inbox.put_reference(
        reference_entity(body),
        body.kind,
        body.source,
        body.version,
        down_body_adapter.dump_json(body).decode(),
        body.changed_at,
    )


async def test_the_latest_state_of_each_entity_is_kept(inbox: Inbox) -> None:
    assert await put(inbox, item("PEN-1", 1, price("1.00")))
    assert await put(inbox, item("PEN-1", 3, price("3.00")))
    # Version 2 read late (a page re-read after a lost race) leaves version 3 in place.
    assert not await put(inbox, item("PEN-1", 2, price("2.00")))
    # The same version read again is still the state held: fanned out again, harmlessly.
    assert await put(inbox, item("PEN-1", 3, price("3.00")))
    assert await put(inbox, customer("003A"))
    rows = await inbox.reference_rows("item")
    assert [(r.entity, r.version) for r in rows] == [("item:catalog:PEN-1", "3")]
    assert "3.00" in rows[0].body
    assert await inbox.reference_counts() == {"customer": 1, "item": 1}
    assert (await inbox.stats())["reference"] == {"customer": 1, "item": 1}


async def test_dropping_an_entity_forgets_its_digests(inbox: Inbox) -> None:
    await put(inbox, customer("003A"))
    await inbox.note_sent("0042", "customer:crm:003A", "d1")
    assert await inbox.sent_digest("0042", "customer:crm:003A") == "d1"
    await inbox.note_sent("0042", "customer:crm:003A", "d2")
    assert await inbox.sent_digest("0042", "customer:crm:003A") == "d2"
    await inbox.note_sent("0043", "customer:crm:003A", "d3")
    await inbox.note_sent("0043", "item:crm:X", "d4")
    assert await inbox.sent_digests("customer:crm:003A") == {"0042": "d2", "0043": "d3"}
    assert await inbox.drop_reference("customer:crm:003A")
    assert not await inbox.drop_reference("customer:crm:003A")
    assert await inbox.sent_digest("0042", "customer:crm:003A") is None
    assert await inbox.reference_rows() == []


async def test_a_resync_request_is_claimed_once(inbox: Inbox) -> None:
    stamp = T0.isoformat()
    assert await inbox.claim_resync("0042", "items", stamp)
    assert not await inbox.claim_resync("0042", "items", stamp)
    assert await inbox.claim_resync("0042", "customers", stamp)
    later = (T0 + timedelta(hours=1)).isoformat()
    assert await inbox.claim_resync("0042", "items", later)


async def test_two_relays_claim_one_resync_once(inbox_url: str) -> None:
    first = await open_inbox(inbox_url, relay_id="a")
    second = await open_inbox(inbox_url, relay_id="b")
    try:
        stamp = T0.isoformat()
        claims = await asyncio.gather(
            *(r.claim_resync("0042", "items", stamp) for r in (first, second, first, second))
        )
        assert sorted(claims) == [False, False, False, True]
    finally:
        await first.close()
        await second.close()


async def test_the_cross_reference_is_replaced_row_by_row(inbox: Inbox) -> None:
    assert await inbox.store_xref() == []
    await inbox.put_xref(
        [
            StoreXref("0042", name="Mitte", commercetools_channel="berlin"),
            StoreXref("0043", commercetools_channel="hamburg"),
        ]
    )
    await inbox.put_xref([StoreXref("0042", name="Mitte", commercetools_channel="munich")])
    rows = await inbox.store_xref()
    assert [(r.store, r.commercetools_channel) for r in rows] == [
        ("0042", "munich"),
        ("0043", "hamburg"),
    ]
    assert await inbox.known_stores() == ["0042", "0043"]
