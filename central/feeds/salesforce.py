"""Salesforce as a reference feed: contacts (or person accounts) changed after the cursor,
read by SOQL in the order of `SystemModstamp` (then `Id`, so records changed in the same
second are neither skipped nor read twice), each turned into the `RefCustomer` the
tills see through a configurable field map and a consent filter.

The query (developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/
sforce_api_calls_soql_select.htm): `SELECT Id, SystemModstamp, … FROM Contact WHERE …
ORDER BY SystemModstamp ASC, Id ASC LIMIT n` through REST `/query`
(developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm).
dateTime literals are unquoted, `YYYY-MM-DDThh:mm:ssZ` (soql_sosl/
sforce_api_calls_soql_select_dateformats.htm); answers write them `…T18:00:00.000+0000`.
`SystemModstamp` moves on every change, by a user or by automation, and is indexed (the
documented field for replication-style polling).

Deletion: the feed reads through `/queryAll`, which also returns records deleted or
merged away (api_rest/resources_queryall.htm) with `IsDeleted` true; such a customer is
purged at every store that was sent them.

Consent: a contact field (email, phone) leaves the CRM only when its rule says so:
`consent.email = "!HasOptedOutOfEmail"` sends the address only while the opt-out box is
clear. A field without a rule never leaves. With `share_field`, a customer whose box is
clear reaches no store, and one that central held is purged at every store.
"""

# ruff: noqa: S608  (SOQL here is joined from validated field names and formatted instants)
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from pydantic import ValidationError

from contract import RefCustomer

from ..connectors._base import ConnectorError
from ..connectors.salesforce.connector import SalesforceConnector, soql_quote
from ._base import FeedError, FeedPage, Withdrawn
from ._settings import CONTACT_FIELDS, FeedSettings

__all__ = ["SalesforceFeed", "sf_instant", "soql_instant"]


def soql_instant(moment: datetime) -> str:
    """A SOQL dateTime literal (UTC, whole seconds, Z, unquoted)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sf_instant(value: str) -> datetime:
    """An instant as Salesforce answers it (`2026-12-05T18:00:00.000+0000`)."""
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"
    return datetime.fromisoformat(text)


def _path(record: dict[str, Any], name: str) -> Any:
    """A field of the record, following relationship names (`Loyalty__r.Tier__c`)."""
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class SalesforceFeed:
    """Reads one org's customers through its target's connector (same credentials)."""

    def __init__(self, name: str, settings: FeedSettings, connector: SalesforceConnector) -> None:
        self.name = name
        self._s = settings
        self._api = connector

    async def aclose(self) -> None:
        await self._api.aclose()

    @property
    def selected(self) -> list[str]:
        """The fields the query reads: ids, the map, preferences, consent boxes."""
        names = ["Id", "SystemModstamp", "IsDeleted"]
        wanted = [
            *self._s.fields.values(),
            *self._s.preferences.values(),
            *(rule.removeprefix("!") for rule in self._s.consent.values()),
            *([self._s.share_field] if self._s.share_field else []),
        ]
        for field in wanted:
            if field not in names:
                names.append(field)
        return names

    def query(self, cursor: str | None, now: datetime) -> str:
        settled = now - timedelta(seconds=self._s.lag_seconds)
        where = [f"SystemModstamp < {soql_instant(settled)}"]
        if cursor is not None:
            at, _, last = cursor.partition("|")
            stamp = soql_instant(sf_instant(at))
            where.append(
                f"(SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > "
                f"{soql_quote(last)}))"
            )
        if self._s.object == "Account":
            where.append("IsPersonAccount = true")
        if self._s.where:
            where.append(f"({self._s.where})")
        return (
            f"SELECT {', '.join(self.selected)} FROM {self._s.object} "
            f"WHERE {' AND '.join(where)} ORDER BY SystemModstamp ASC, Id ASC "
            f"LIMIT {self._s.page_size}"
        )

    async def page(self, cursor: str | None, now: datetime) -> FeedPage:
        try:
            response = await self._api.request(
                "GET", "/queryAll", params={"q": self.query(cursor, now)}
            )
        except (ConnectorError, httpx.HTTPError) as exc:
            raise FeedError(f"customers cannot be read: {exc}") from None
        if response.status_code != 200:
            raise FeedError(f"GET /queryAll answered {response.status_code}: {response.text[:300]}")
        records: list[dict[str, Any]] = response.json().get("records") or []
        page = FeedPage(
            cursor=f"{records[-1]['SystemModstamp']}|{records[-1]['Id']}" if records else None,
            more=len(records) >= self._s.page_size,
        )
        for record in records:
            if record.get("IsDeleted") is True or (
                self._s.share_field and _path(record, self._s.share_field) is not True
            ):
                page.withdrawn.append(Withdrawn(self.name, str(record["Id"])))
                continue
            try:
                page.entities.append(self.customer(record))
            except ValueError as exc:
                page.unreadable.append(f"{self._s.object} {record.get('Id')}: {exc}")
        return page

    def allowed(self, record: dict[str, Any], field: str) -> bool:
        """Whether the CRM lets this contact field leave for the stores."""
        if field not in CONTACT_FIELDS:
            return True
        rule = self._s.consent.get(field)
        if not rule:
            return False
        box = _path(record, rule.removeprefix("!"))
        return box is False if rule.startswith("!") else box is True

    def customer(self, record: dict[str, Any]) -> RefCustomer:
        """The customer as the tills see them; ValueError naming the field that is wrong
        (never its value: it may be contact data)."""
        values: dict[str, Any] = {}
        for field, source in self._s.fields.items():
            value = _path(record, source)
            if value is None or value == "" or not self.allowed(record, field):
                continue
            if field == "points":
                try:
                    value = Decimal(str(value))
                except InvalidOperation:
                    raise ValueError(f"{source} is not a number") from None
            else:
                value = str(value)
            values[field] = value
        preferences = {
            name: str(value)
            for name, source in self._s.preferences.items()
            if (value := _path(record, source)) not in (None, "")
        }
        try:
            return RefCustomer(
                source=self.name,
                customer_id=str(record["Id"]),
                version=str(record["SystemModstamp"]),
                preferences=preferences,
                changed_at=sf_instant(str(record["SystemModstamp"])),
                **values,
            )
        except (ValidationError, KeyError) as exc:
            if isinstance(exc, KeyError):
                raise ValueError(f"no {exc.args[0]}") from None
            err = exc.errors()[0]
            raise ValueError(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
