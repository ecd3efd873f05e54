"""Salesforce customers: the POS customer matched to a Contact by the configured rule —
loyalty id, then POS customer id, then email, then phone by default — or created; a
match is updated only where the POS owns the profile."""

# ruff: noqa: S608  (SOQL here is joined from configured names and soql_quote()d values)
from __future__ import annotations

from urllib.parse import quote

import httpx

from contract import Customer

from .._base import Exchange, Unfit
from ._session import Api, answer, patch, soql_quote
from ._settings import SalesforceSettings

__all__ = ["matched_contact"]


async def matched_contact(
    api: Api, settings: SalesforceSettings, customer: Customer, trace: list[Exchange]
) -> str | None:
    """The matched or created Contact's id, by the configured rule."""
    obj = settings.customer_object
    profile = {
        k: v
        for k, v in {
            "FirstName": customer.first_name,
            "LastName": customer.last_name or "POS customer",
            settings.match_fields["email"]: customer.email,
            settings.match_fields["phone"]: customer.phone,
        }.items()
        if v
    }
    for key in settings.match_rule:
        value = getattr(customer, key)
        if not value:
            continue
        field = settings.match_fields[key]
        if key in ("loyalty_id", "pos_customer_id"):
            path = f"/sobjects/{obj}/{field}/{quote(value, safe='')}"
            found = await api("GET", path, trace)
            if found.status_code == 300:
                raise Unfit(f"{field} {key} matches several {obj} records: {_ids(found)}")
            if found.status_code == 200:
                contact = str(found.json()["Id"])
                if settings.profile_owner == "pos":
                    await patch(api, f"/sobjects/{obj}/{contact}", profile, trace)
                return contact
            if found.status_code != 404:
                raise answer(found)
            # Upsert by the external id: creates the Contact under that id.
            created = await api("PATCH", path, trace, json=profile)
            if created.status_code not in (200, 201):
                raise answer(created)
            return str(created.json()["id"])
        query = f"SELECT Id FROM {obj} WHERE {field} = {soql_quote(value)} LIMIT 2"
        response = await api("GET", "/query", trace, params={"q": query})
        if response.status_code != 200:
            raise answer(response)
        rows = response.json().get("records", [])
        if len(rows) > 1:
            ids = ", ".join(r["Id"] for r in rows)
            raise Unfit(f"{key} matches several {obj} records: {ids}")
        if rows:
            contact = str(rows[0]["Id"])
            if settings.profile_owner == "pos":
                await patch(api, f"/sobjects/{obj}/{contact}", profile, trace)
            return contact
    return None


def _ids(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, list):
        return ", ".join(str(url).rsplit("/", 1)[-1] for url in body)
    return str(body)
