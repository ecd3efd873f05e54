"""What every feed shares: the page a platform hands the runner and the error of a read
that failed.

    FeedError   the platform could not be read now (no answer, 5xx, 401): next poll

An entity that cannot be read (a product without SKU, a contact without id) is left out
of the page and counted; it never holds the cursor back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from contract import RefCustomer, RefItem

__all__ = ["Feed", "FeedError", "FeedPage", "Withdrawn"]


class FeedError(Exception):
    """The platform could not be read this time; the next poll tries again."""


@dataclass(frozen=True)
class Withdrawn:
    """A customer who no longer may reach the stores (consent withdrawn): purged there."""

    source: str
    customer_id: str


@dataclass(frozen=True)
class FeedPage:
    """One read: the entities' current states, customers withdrawn, how many entities
    could not be read, the cursor after the last one read (None: nothing read), and
    whether more may be waiting."""

    entities: list[RefCustomer | RefItem] = field(default_factory=list)
    withdrawn: list[Withdrawn] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    cursor: str | None = None
    more: bool = False


class Feed(Protocol):
    """One platform's reader: the entities changed after `cursor`."""

    async def page(self, cursor: str | None, now: datetime) -> FeedPage: ...

    async def aclose(self) -> None: ...
