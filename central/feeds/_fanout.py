"""Reference data fanned out to the stores it concerns, each store's own view of it.

A store's view of an item keeps only the prices it sells at: its price channel, its
customer group and its currency (a price without channel or group applies everywhere).
A customer goes to every store, or only to their home store (`customers_to`). What each
store was last queued of an entity is kept as a digest of that view (without version
and change time), so a change that leaves a store's view as it was — a price of another
channel — queues nothing for it, and a message is queued once per entity and content.

Which store has which ids comes from the store cross-reference (`stores import`), and
where it says nothing, from the config's `[central.stores."ID"]` tables (commercetools:
`price_channel` or `distribution_channel`, `customer_group`; salesforce: `location`;
the store's `currency`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contract import (
    CustomerPurge,
    RefCustomer,
    RefItem,
    ResyncDone,
    down_body_adapter,
    reference_entity,
    reference_key,
)

from ..inbox import Downlink, Reference, StoreXref, utcnow
from ..routing import StoreRoute

__all__ = ["PURGED", "Fanout", "ReferenceInbox", "StoreScope", "digest_of", "scopes_of"]

log = logging.getLogger("tillbridge.central.feeds")

PURGED = "purged"
"""The digest noted for a store that was sent a customer's purge."""

_SCOPE_KIND = {"customers": "customer", "items": "item"}


class ReferenceInbox(Downlink, Reference, Protocol):
    """What the feeds write: the downlink queue, cursors and the reference tables."""


@dataclass(frozen=True)
class StoreScope:
    """What a store sells at and where the CRM places it."""

    store: str
    channel: str = ""
    customer_group: str = ""
    currency: str = ""
    salesforce_location: str = ""
    adobe_source: str = ""


def scopes_of(
    xref: Sequence[StoreXref], stores: Mapping[str, StoreRoute], known: Iterable[str]
) -> dict[str, StoreScope]:
    """Every store's scope: its cross-reference row first, then its config table (or the
    `default` one), for every store central knows of."""
    rows = {x.store: x for x in xref}
    names = (set(known) | set(rows) | set(stores)) - {"default"}
    found: dict[str, StoreScope] = {}
    for store in sorted(names):
        x = rows.get(store) or StoreXref(store)
        route = stores.get(store) or stores.get("default")
        tables = route.tables if route is not None else {}
        ct = tables.get("commercetools", {})
        sf = tables.get("salesforce", {})
        adobe = tables.get("adobe_commerce", {})
        found[store] = StoreScope(
            store=store,
            channel=x.commercetools_channel
            or str(ct.get("price_channel") or ct.get("distribution_channel") or ""),
            customer_group=x.customer_group or str(ct.get("customer_group") or ""),
            currency=x.currency or (route.currency if route is not None else ""),
            salesforce_location=x.salesforce_location or str(sf.get("location") or ""),
            adobe_source=x.adobe_source or str(adobe.get("source_code") or ""),
        )
    return found


def store_view(body: RefItem, scope: StoreScope) -> RefItem:
    """The item with only the prices that apply at the store, and the stock of the
    store's own source only (`stock@SOURCE` becomes `stock`)."""
    attributes: dict[str, str] = {}
    for name, value in body.attributes.items():
        base, at, source = name.partition("@")
        if not at:
            attributes[name] = value
        elif source == scope.adobe_source:
            attributes[base] = value
    prices = [
        p
        for p in body.prices
        if (not p.channel or p.channel == scope.channel)
        and (not p.customer_group or p.customer_group == scope.customer_group)
        and (not scope.currency or p.currency == scope.currency)
    ]
    return body.model_copy(update={"prices": prices, "attributes": attributes})


def digest_of(body: RefCustomer | RefItem) -> str:
    """What a store's view says, without version and change time: equal views, one digest."""
    shown = json.loads(down_body_adapter.dump_json(body))
    shown.pop("version", None)
    shown.pop("changed_at", None)
    text = json.dumps(shown, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Fanout:
    """Queues reference data on the downlink of the stores it concerns."""

    def __init__(
        self,
        inbox: ReferenceInbox,
        stores: Mapping[str, StoreRoute],
        customers_to: Mapping[str, str],
    ) -> None:
        self.inbox = inbox
        self._stores = stores
        self._customers_to = customers_to  # feed name → all | home_store

    async def scopes(self) -> dict[str, StoreScope]:
        xref = await self.inbox.store_xref()
        return scopes_of(xref, self._stores, await self.inbox.known_stores())

    def concerns(self, body: RefCustomer | RefItem, scope: StoreScope) -> bool:
        if isinstance(body, RefItem):
            return True  # the catalog is every store's; its prices are scoped
        if self._customers_to.get(body.source, "all") == "all":
            return True
        home = body.home_store or ""
        return bool(home) and home in (scope.store, scope.salesforce_location)

    async def send(
        self, body: RefCustomer | RefItem, scopes: Mapping[str, StoreScope] | None = None
    ) -> int:
        """Queue `body` for every store it concerns whose view of it changed; a customer
        whose home moved away is purged at the store that held them. Returns how many
        messages were queued now."""
        entity = reference_entity(body)
        sent = await self.inbox.sent_digests(entity)
        queued = 0
        for scope in (scopes if scopes is not None else await self.scopes()).values():
            held = sent.get(scope.store)
            if not self.concerns(body, scope):
                if isinstance(body, RefCustomer) and held not in (None, PURGED):
                    queued += await self._purge_at(scope.store, body.source, body.customer_id)
                continue
            view = store_view(body, scope) if isinstance(body, RefItem) else body
            digest = digest_of(view)
            if held == digest:
                continue
            key = f"{reference_key(view)}:{digest[:16]}"
            queued += await self._queue(scope.store, view, key)
            await self.inbox.note_sent(scope.store, entity, digest)
        return queued

    async def purge(self, source: str, customer_id: str, *, now: datetime | None = None) -> int:
        """Queue the customer's purge to every store and forget them here; returns how many
        stores it was queued for."""
        moment = now or utcnow()
        queued = 0
        for store in await self.scopes():
            queued += await self._purge_at(store, source, customer_id, moment)
        await self.inbox.drop_reference(f"customer:{source}:{customer_id}")
        return queued

    async def _purge_at(
        self, store: str, source: str, customer_id: str, now: datetime | None = None
    ) -> int:
        moment = now or utcnow()
        purge = CustomerPurge(
            source=source,
            customer_id=customer_id,
            requested_at=moment,
            version=moment.strftime("%Y%m%dT%H%M%S%fZ"),
        )
        queued = await self._queue(store, purge, reference_key(purge))
        await self.inbox.note_sent(store, reference_entity(purge), PURGED)
        return queued

    async def resync(self, store: str, wanted: Sequence[str], requested_at: datetime) -> int:
        """Answer a store's request for its reference data whole: every current entity of
        each scope it wants that concerns it, queued once per request. Each message's key
        names the request, so a relay that stopped midway, or two relays hearing the same
        heartbeat, queue nothing twice; the request counts as answered only once all of it
        is queued. Returns how many messages were queued now."""
        stamp = requested_at.isoformat()
        scopes = await self.scopes()
        scope = scopes.get(store) or scopes_of([], self._stores, [store])[store]
        queued = 0
        for part in wanted:
            kind = _SCOPE_KIND.get(part)
            if kind is None or await self.inbox.resync_answered(store, part, stamp):
                continue
            for row in await self.inbox.reference_rows(kind):
                body = down_body_adapter.validate_json(row.body)
                if not isinstance(body, RefCustomer | RefItem) or not self.concerns(body, scope):
                    continue
                view = store_view(body, scope) if isinstance(body, RefItem) else body
                queued += await self._queue(store, view, f"{reference_key(view)}:resync:{stamp}")
                await self.inbox.note_sent(store, row.entity, digest_of(view))
            # Then say it is all there, so the store closes its request even when nothing
            # of this scope concerns it.
            done = ResyncDone.model_validate({"scope": part, "requested_at": requested_at})
            text = down_body_adapter.dump_json(done).decode()
            _, new = await self.inbox.enqueue(store, done.kind, f"resync_done:{part}:{stamp}", text)
            queued += int(new)
            if not await self.inbox.claim_resync(store, part, stamp):
                continue  # another relay answered it alongside (the keys kept it once)
            log.info(
                "Reference data queued again for a store that asked.",
                extra={"store": store, "scope": part, "requested_at": stamp},
            )
        return queued

    async def _queue(
        self, store: str, body: RefCustomer | RefItem | CustomerPurge, key: str
    ) -> int:
        text = down_body_adapter.dump_json(body).decode()
        seq, new = await self.inbox.enqueue(store, body.kind, key, text)
        if new:
            # Ids and versions only: a customer's contact fields are never logged.
            log.info(
                "Reference data queued for the store.",
                extra={"store": store, "kind": body.kind, "key": key, "seq": seq},
            )
        return int(new)
