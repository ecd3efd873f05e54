"""The Salesforce customer feed against an in-memory org (`fake_crm`), into a real SQLite
inbox: contacts read by SystemModstamp through a field map, contact fields only where
consent allows, customers to every store or their home store, the latest state once after
several changes, a withdrawn customer purged, and no contact field in any log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.config import CentralConfig
from central.feeds import Feeds
from central.inbox import Inbox, StoreXref, open_inbox
from contract import CustomerPurge, RefCustomer, down_body_adapter

from .fake_crm import CLIENT_ID, CLIENT_SECRET, MY_DOMAIN, FakeCrm, Refused

STORES = ("0042", "0043", "0044")


def config(**feed: Any) -> CentralConfig:
    target = {
        "name": "crm",
        "type": "salesforce",
        "login_url": MY_DOMAIN,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "kinds": ["sale"],
    }
    settings = {
        "type": "salesforce",
        "target": "crm",
        "lag_seconds": 0,
        "page_size": 2,
        "fields": {
            "first_name": "FirstName",
            "last_name": "LastName",
            "email": "Email",
            "phone": "Phone",
            "loyalty_id": "Loyalty_Id__c",
            "tier": "Loyalty_Tier__c",
            "points": "Loyalty_Points__c",
            "home_store": "Home_Store__c",
        },
        "preferences": {"language": "Preferred_Language__c"},
        **feed,
    }
    return CentralConfig.model_validate({"targets": [target], "feeds": {"crm": settings}})


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[Inbox]:
    opened = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    await opened.put_xref([StoreXref(s, salesforce_location=f"LOC-{s}") for s in STORES])
    yield opened
    await opened.close()


async def feeds_for(crm: FakeCrm, inbox: Inbox, **feed: Any) -> Feeds:
    return Feeds(config(**feed), inbox, transport_for=lambda _: httpx.MockTransport(crm.handler))


async def customers(inbox: Inbox, store: str) -> list[RefCustomer | CustomerPurge]:
    found = []
    for row in await inbox.pending_down(store, limit=1000):
        body = down_body_adapter.validate_json(row.body)
        assert isinstance(body, RefCustomer | CustomerPurge)
        found.append(body)
    return found


def ada(crm: FakeCrm, **change: Any) -> None:
    crm.save(
        "003A",
        **{
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Email": "ada@example.test",
            "Phone": "+49 30 555 0199",
            "DoNotCall": True,
            "Loyalty_Id__c": "L-1",
            "Loyalty_Tier__c": "gold",
            "Loyalty_Points__c": 120.5,
            "Preferred_Language__c": "de",
            "Home_Store__c": "LOC-0043",
            **change,
        },
    )


async def test_a_contact_reaches_every_store_with_only_the_fields_consent_allows(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    crm = FakeCrm()
    ada(crm)
    crm.save("003B", FirstName="Grace", Email="grace@example.test", HasOptedOutOfEmail=True)
    feeds = await feeds_for(crm, inbox)
    caplog.set_level(logging.DEBUG, logger="tillbridge")
    try:
        assert await feeds.poll_once(now=crm.clock + timedelta(seconds=1)) == 2 * len(STORES)
    finally:
        await feeds.aclose()
    first, grace = await customers(inbox, "0044")
    assert isinstance(first, RefCustomer)
    assert (first.customer_id, first.source, first.loyalty_id, first.tier) == (
        "003A",
        "crm",
        "L-1",
        "gold",
    )
    assert (first.first_name, first.email, str(first.points)) == (
        "Ada",
        "ada@example.test",
        "120.5",
    )
    assert first.phone is None  # DoNotCall: the number stays in the CRM
    assert first.preferences == {"language": "de"}
    assert first.version == "2026-12-01T09:00:01.000+0000"
    assert isinstance(grace, RefCustomer)
    assert grace.email is None  # opted out of email
    # The query reads what the map and the consent rules name, by SystemModstamp.
    assert "ORDER BY SystemModstamp ASC, Id ASC" in crm.queries[0]
    assert "HasOptedOutOfEmail" in crm.queries[0]
    for record in caplog.records:
        if not record.name.startswith("tillbridge"):
            continue
        text = f"{record.getMessage()} {record.__dict__}"
        assert "example.test" not in text
        assert "555 0199" not in text  # spaced: no id or number of a log line has it


async def test_several_changes_while_a_store_waits_reach_it_once_as_the_latest(
    inbox: Inbox,
) -> None:
    crm = FakeCrm()
    ada(crm)
    feeds = await feeds_for(crm, inbox, customers_to="home_store")
    try:
        assert await feeds.poll_once(now=crm.clock + timedelta(seconds=1)) == 1
        assert [len(await customers(inbox, s)) for s in STORES] == [0, 1, 0]
        ada(crm, Loyalty_Tier__c="platinum")
        ada(crm, Loyalty_Tier__c="diamond", Loyalty_Points__c=999)
        assert await feeds.poll_once(now=crm.clock + timedelta(seconds=1)) == 1
        latest = (await customers(inbox, "0043"))[-1]
        assert isinstance(latest, RefCustomer)
        assert (latest.tier, str(latest.points)) == ("diamond", "999")
        # The customer moves home: the new store gets them, the old one their purge.
        ada(crm, Home_Store__c="0044")
        assert await feeds.poll_once(now=crm.clock + timedelta(seconds=1)) == 2
        assert isinstance((await customers(inbox, "0043"))[-1], CustomerPurge)
        assert isinstance((await customers(inbox, "0044"))[-1], RefCustomer)
        assert await customers(inbox, "0042") == []
    finally:
        await feeds.aclose()


async def test_contacts_changed_in_one_second_are_read_once_across_pages(inbox: Inbox) -> None:
    crm = FakeCrm()
    for ident in ("003A", "003B", "003C", "003D", "003E"):
        crm.save(ident, FirstName=ident, same_second=True)
    feeds = await feeds_for(crm, inbox)
    try:
        assert await feeds.poll_once(now=crm.clock + timedelta(seconds=1)) == 5 * len(STORES)
        assert await feeds.poll_once(now=crm.clock + timedelta(seconds=1)) == 0
    finally:
        await feeds.aclose()
    assert [c.customer_id for c in await customers(inbox, "0042")] == [
        "003A",
        "003B",
        "003C",
        "003D",
        "003E",
    ]
    assert len(crm.queries) >= 3  # page_size 2: three pages, then an empty read


async def test_a_customer_who_withdraws_consent_is_purged_at_every_store(inbox: Inbox) -> None:
    crm = FakeCrm()
    ada(crm, Share_With_Stores__c=True)
    feeds = await feeds_for(crm, inbox, share_field="Share_With_Stores__c")
    try:
        assert await feeds.poll_once(now=crm.clock + timedelta(seconds=1)) == 3
        ada(crm, Share_With_Stores__c=False)
        assert await feeds.poll_once(now=crm.clock + timedelta(seconds=1)) == 3
    finally:
        await feeds.aclose()
    for store in STORES:
        assert isinstance((await customers(inbox, store))[-1], CustomerPurge)
    assert await inbox.reference_rows("customer") == []


async def test_a_refused_query_is_an_error_and_moves_no_cursor(inbox: Inbox) -> None:
    crm = FakeCrm()
    ada(crm)
    feeds = await feeds_for(crm, inbox, preferences={"shoe_size": "Shoe_Size__c"})
    try:
        assert await feeds.poll_once(now=crm.clock + timedelta(seconds=1)) == 0
        assert "No such column 'Shoe_Size__c'" in feeds.runners[0].counts.last_error
        assert await inbox.source_cursor("feed:crm") is None
    finally:
        await feeds.aclose()


@pytest.mark.parametrize(
    ("rule", "query"),
    [
        (
            "datetime-literal",
            "SELECT Id FROM Contact WHERE SystemModstamp > '2026-12-01T09:00:00Z'",
        ),
        (
            "datetime-literal",
            "SELECT Id FROM Contact WHERE SystemModstamp > 2026-12-01T09:00:00.5Z",
        ),
        ("unknown-field", "SELECT Id, Shoe_Size__c FROM Contact"),
    ],
)
def test_each_rule_of_the_fake_bites_and_can_be_switched_off(rule: str, query: str) -> None:
    crm = FakeCrm()
    crm.save("003A", FirstName="Ada")
    with pytest.raises(Refused):
        crm.run(query)
    assert FakeCrm(without=(rule,)).run(query) == []


def test_without_order_by_rows_come_newest_first() -> None:
    crm = FakeCrm()
    for ident in ("003A", "003B"):
        crm.save(ident)
    assert [r["Id"] for r in crm.run("SELECT Id FROM Contact")] == ["003B", "003A"]
    assert [r["Id"] for r in FakeCrm(without=("no-order",)).run("SELECT Id FROM Contact")] == []
    lenient = FakeCrm(without=("no-order",))
    for ident in ("003A", "003B"):
        lenient.save(ident)
    assert [r["Id"] for r in lenient.run("SELECT Id FROM Contact")] == ["003A", "003B"]


async def test_an_expired_session_is_refused() -> None:
    crm = FakeCrm()
    async with httpx.AsyncClient(transport=httpx.MockTransport(crm.handler)) as client:
        answer = await client.get(f"{MY_DOMAIN}/services/data/v62.0/query", params={"q": "x"})
    assert answer.status_code == 401


async def test_two_relays_polling_at_once_queue_each_customer_once(inbox_url: str) -> None:
    crm = FakeCrm()
    for ident in ("003A", "003B", "003C", "003D", "003E"):
        crm.save(ident, FirstName=ident)
    relays = [await open_inbox(inbox_url, relay_id=name) for name in ("a", "b")]
    await relays[0].put_xref([StoreXref(s) for s in STORES])
    both = [await feeds_for(crm, inbox) for inbox in relays]
    try:
        now = crm.clock + timedelta(seconds=1)
        for _ in range(3):
            await asyncio.gather(*(f.poll_once(now=now) for f in both))
        for store in STORES:
            got = [c.customer_id for c in await customers(relays[0], store)]
            assert got == ["003A", "003B", "003C", "003D", "003E"]
    finally:
        for feeds in both:
            await feeds.aclose()
        for inbox in relays:
            await inbox.close()


async def test_a_contact_deleted_in_the_crm_is_purged_at_every_store(inbox: Inbox) -> None:
    crm = FakeCrm()
    ada(crm)
    crm.save("003B", FirstName="Grace")
    feeds = await feeds_for(crm, inbox)
    try:
        assert await feeds.poll_once(now=crm.clock + timedelta(seconds=1)) == 2 * len(STORES)
        crm.delete("003A")
        assert crm.run("SELECT Id FROM Contact ORDER BY Id ASC") == [
            {"attributes": {"type": "Contact"}, "Id": "003B"}
        ]  # /query no longer sees them: only /queryAll tells the feed
        assert await feeds.poll_once(now=crm.clock + timedelta(seconds=1)) == len(STORES)
    finally:
        await feeds.aclose()
    for store in STORES:
        last = (await customers(inbox, store))[-1]
        assert isinstance(last, CustomerPurge)
        assert last.customer_id == "003A"
    assert [r.entity for r in await inbox.reference_rows("customer")] == ["customer:crm:003B"]
