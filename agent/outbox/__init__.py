"""The agent's durable buffer: records wait here, in SQLite, until central acknowledges them."""

from agent._seal import SealError

from ._db import Recovery
from ._outbox import Outbox, OutboxStats, OutRow
from ._refused import RefusedRow, RejectedRow, list_refused, list_rejected, refused_body

__all__ = [
    "OutRow",
    "Outbox",
    "OutboxStats",
    "Recovery",
    "RefusedRow",
    "RejectedRow",
    "SealError",
    "list_refused",
    "list_rejected",
    "refused_body",
]
