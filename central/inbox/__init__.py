"""The relay's inbox: every record exactly once, its state and history, each store's
stream and the fleet registry, on SQLite (one relay) or PostgreSQL (several).

It is one protocol per role, each small: `Records` (batches in, the stream per store,
a record's state), `Deliveries` (per target, with the audit trail), `ExceptionQueue`,
`Views` (what people and reconciliation read) and `Downlink` (each store's queue of
messages going down, with its own gap-free seq) and `Reference` (the latest state of
the reference data the feeds read, and the store cross-reference). `Inbox` is all of them over one
database; a part of the relay asks for the role it uses. `open_inbox(url)` picks the
backend from the URL's scheme; both backends pass one contract suite.
"""

from __future__ import annotations

from pathlib import Path

from ._model import (
    CLAIMABLE,
    AuditEntry,
    ClaimedRecord,
    DayRecord,
    Deliveries,
    DeliveryItem,
    DeliveryState,
    DeliveryUpdate,
    Downlink,
    DownlinkSummary,
    DownRow,
    ExceptionItem,
    ExceptionQueue,
    Gap,
    Inbox,
    IncomingRecord,
    InsertResult,
    InvalidRecord,
    OrderDay,
    Records,
    RecordState,
    Refusals,
    Released,
    RouteDecision,
    StoreStatus,
    Views,
    link_key,
    utcnow,
)
from ._reference import XREF_COLUMNS, Reference, ReferenceRow, StoreXref

__all__ = [
    "CLAIMABLE",
    "XREF_COLUMNS",
    "AuditEntry",
    "ClaimedRecord",
    "DayRecord",
    "Deliveries",
    "DeliveryItem",
    "DeliveryState",
    "DeliveryUpdate",
    "DownRow",
    "Downlink",
    "DownlinkSummary",
    "ExceptionItem",
    "ExceptionQueue",
    "Gap",
    "Inbox",
    "IncomingRecord",
    "InsertResult",
    "InvalidRecord",
    "OrderDay",
    "RecordState",
    "Records",
    "Reference",
    "ReferenceRow",
    "Refusals",
    "Released",
    "RouteDecision",
    "StoreStatus",
    "StoreXref",
    "Views",
    "link_key",
    "open_inbox",
    "utcnow",
]


async def open_inbox(url: str, *, relay_id: str = "", pool_size: int = 5) -> Inbox:
    """Open the inbox at `sqlite:///path` or `postgresql://…`, applying pending migrations."""
    if url.startswith("sqlite:///"):
        from .sqlite import open_sqlite

        return await open_sqlite(Path(url.removeprefix("sqlite:///")), relay_id=relay_id)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import open_postgres

        return await open_postgres(url, relay_id=relay_id, pool_size=pool_size)
    raise ValueError(
        f"unsupported inbox URL {url.split('://', 1)[0]!r}: use sqlite:/// or postgresql://"
    )
