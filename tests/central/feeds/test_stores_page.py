"""The dashboard's Stores page: the cross-reference as loaded, what the feeds use per
store (the sheet first, then the config's tables), and counts of the reference data
held — never a customer's fields."""

from __future__ import annotations

from central.inbox import StoreXref
from contract import reference_entity
from tests.central.test_web import relay, sign_in

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
