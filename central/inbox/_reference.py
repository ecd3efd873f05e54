"""Reference data in the inbox: the latest state of every entity the feeds read, what
each store was last queued of it, each store's resync requests, and the store
cross-reference. The protocol lives here so that `_model` stays about records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Protocol

__all__ = ["XREF_COLUMNS", "Reference", "ReferenceRow", "StoreXref"]


@dataclass(frozen=True)
class ReferenceRow:
    """The latest state of one entity (`reference_entity`), as its feed read it."""

    entity: str
    kind: str  # customer | item
    source: str
    version: str
    body: str  # the contract body (RefCustomer or RefItem) as JSON, unscoped
    changed_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoreXref:
    """One store's ids across systems. `store` is the POS store id the agent runs as;
    an empty field is unknown (the config's `[central.stores]` tables may know it)."""

    store: str
    name: str = ""
    commercetools_store: str = ""
    commercetools_channel: str = ""
    customer_group: str = ""
    currency: str = ""
    adobe_source: str = ""
    salesforce_location: str = ""
    oms_store: str = ""


XREF_COLUMNS = tuple(f.name for f in fields(StoreXref))
"""The columns of the cross-reference, in the order of its CSV file."""


class Reference(Protocol):
    """Reference data: the latest state per entity, per-store digests, resyncs, xref."""

    async def put_reference(
        self,
        entity: str,
        kind: str,
        source: str,
        version: str,
        body: str,
        changed_at: datetime,
        *,
        now: datetime | None = None,
    ) -> bool:
        """Keep `body` as the entity's state unless the state held changed later; True
        when the state held is now this version (kept now, or read before: a page read
        again after a crash fans it out again, which the stores' digests make harmless),
        False when a later state is held."""
        ...

    async def drop_reference(self, entity: str) -> bool:
        """Forget the entity and every store's digest of it; True when it was held."""
        ...

    async def reference_rows(self, kind: str | None = None) -> list[ReferenceRow]:
        """Every entity held (of `kind`), in entity order."""
        ...

    async def reference_counts(self) -> dict[str, int]:
        """Entities held per kind."""
        ...

    async def sent_digest(self, store: str, entity: str) -> str | None:
        """The digest of what `store` was last queued of `entity` (None: nothing yet)."""
        ...

    async def sent_digests(self, entity: str) -> dict[str, str]:
        """Per store, the digest of what it was last queued of `entity` (one read for the
        whole fleet, as the fan-out needs it)."""
        ...

    async def note_sent(
        self, store: str, entity: str, digest: str, *, now: datetime | None = None
    ) -> None: ...

    async def resync_answered(self, store: str, scope: str, requested_at: str) -> bool:
        """Whether that request of the store was answered already."""
        ...

    async def claim_resync(
        self, store: str, scope: str, requested_at: str, *, now: datetime | None = None
    ) -> bool:
        """True exactly once per (store, scope, requested_at), also with several relays:
        the caller answers that request."""
        ...

    async def put_xref(self, rows: Sequence[StoreXref], *, now: datetime | None = None) -> int:
        """Insert or replace these stores' cross-reference rows; returns how many."""
        ...

    async def store_xref(self) -> list[StoreXref]:
        """Every store's cross-reference row, by store id."""
        ...

    async def known_stores(self) -> list[str]:
        """Every store central knows: the fleet registry and the cross-reference."""
        ...
