"""Reference data at the store: customers and items central sends on the downlink, kept
newest-state-per-entity in `reference.db`, written to the POS, looked up on loopback."""

from ._lookup import answer_lookup, is_lookup
from ._reference import (
    STORED_ONLY,
    Reference,
    heartbeat_resync,
    open_reference,
    reference_status,
)
from ._store import (
    RESYNC_KINDS,
    ReferenceStore,
    ReferenceSummary,
    RefState,
    request_resync,
    summarise_reference,
)

__all__ = [
    "RESYNC_KINDS",
    "STORED_ONLY",
    "RefState",
    "Reference",
    "ReferenceStore",
    "ReferenceSummary",
    "answer_lookup",
    "heartbeat_resync",
    "is_lookup",
    "open_reference",
    "reference_status",
    "request_resync",
    "summarise_reference",
]
