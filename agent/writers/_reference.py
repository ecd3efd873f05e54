"""What every reference writer shares: the batch it is given, the file name it writes
under, and the protocol.

A pass of the downlink's writer loop hands each writer the newest state of every entity
it takes, once, in seq order (a store back from an absence gets the latest state, not
the history). The file's name comes from the seqs it carries: a pass repeated after a
crash makes the same name and finds the file there.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Protocol
from zoneinfo import ZoneInfo

from contract import CustomerPurge, RefCustomer, RefItem

__all__ = ["RefBatch", "RefBody", "ReferenceWriter", "batch_name"]

RefBody = RefCustomer | CustomerPurge | RefItem


@dataclasses.dataclass(frozen=True, slots=True)
class RefBatch:
    store: str
    entries: Sequence[tuple[int, RefBody]]
    """(downlink seq, newest state) of each entity this writer takes, in seq order."""
    zone: ZoneInfo = dataclasses.field(default_factory=lambda: ZoneInfo("UTC"))
    """The store's time zone, for formats that write local times."""


def batch_name(prefix: str, batch: RefBatch, extension: str) -> str:
    """`customers_000000000042_1a2b3c4d5e6f.csv`: the last seq (zero-padded, so the POS
    imports in the order central sent) and a hash of every seq in the file."""
    seqs = ",".join(str(seq) for seq, _ in batch.entries)
    digest = hashlib.sha256(seqs.encode()).hexdigest()[:12]
    last = batch.entries[-1][0]
    return f"{prefix}_{last:012d}_{digest}{extension}"


class ReferenceWriter(Protocol):
    """Writes reference states to the POS; returns the file name, or None when the batch
    holds nothing it writes. Raises `WriteError`; never sleeps or retries."""

    name: str
    kinds: frozenset[str]
    """The message kinds it takes (`customer`, `customer_purge`, `item`)."""

    async def write(self, batch: RefBatch) -> str | None: ...

    async def forget(self, purges: Sequence[CustomerPurge]) -> int:
        """Remove these customers from files written and not yet taken by the POS;
        returns how many files changed."""
        ...
