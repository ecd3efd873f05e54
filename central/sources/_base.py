"""What every order source shares: the page a platform hands the runner, the refusal of
an order that cannot go to a store, and the maps from the platform's store and SKU back
to the POS's own ids.

Errors while reading a platform:

    SourceError   the platform could not be read now (no answer, 5xx, 401): next poll
    Refusal       one order cannot go down (unknown store, unmapped SKU, no lines):
                  logged, counted as a refusal, the cursor moves on
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from contract import OnlineOrder, OrderCancel

from ..connectors import TargetSettings
from ..inbox import Downlink, Refusals
from ..routing import SkuTable, StoreRoute

__all__ = [
    "Page",
    "Platform",
    "Refusal",
    "SkuMap",
    "SourceError",
    "SourceInbox",
    "StoreMap",
    "cents",
]


class SourceError(Exception):
    """The platform could not be read this time; the next poll tries again."""


@dataclass(frozen=True)
class Refusal:
    """An order that cannot go to a store, and why (in words a person can act on)."""

    order_number: str
    reason: str
    store: str | None = None


@dataclass(frozen=True)
class Page:
    """What one read of a platform gave: messages to queue, refusals, how many orders
    were not for a store, the cursor after the last order read (None: nothing read) and
    whether more may be waiting."""

    messages: list[OnlineOrder | OrderCancel] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    skipped: int = 0
    cursor: str | None = None
    more: bool = False


class Platform(Protocol):
    """One platform's reader: the page of orders changed after `cursor`."""

    async def page(self, cursor: str | None, now: datetime) -> Page: ...

    async def aclose(self) -> None: ...


class SourceInbox(Downlink, Refusals, Protocol):
    """What a source writes: the downlink queue and cursors, and a refusal the relay's
    stats count (the intake's own `refusals`)."""


class StoreMap:
    """The platform's store (commercetools store key, Adobe Commerce pickup location or
    source code) → the POS store id: the source's own `stores` first, then each
    `[central.stores."ID"]` whose table for the target names it under `route_key`."""

    def __init__(
        self,
        explicit: Mapping[str, str],
        stores: Mapping[str, StoreRoute],
        target: TargetSettings,
        route_key: str,
    ) -> None:
        self._explicit = dict(explicit)
        self._route_key = route_key
        self._target = target
        self._found: dict[str, list[str]] = {}
        self.use(stores)

    def use(self, stores: Mapping[str, StoreRoute]) -> None:
        """Map by these store tables from now on (the config's with the store
        cross-reference laid over them: `routing.stores_with_xref`)."""
        target, route_key = self._target, self._route_key
        self._found = {}
        for store, route in stores.items():
            if store == "default":
                continue
            tables = route.tables
            table = tables.get(target.name) or tables.get(target.type) or {}
            value = str(table.get(route_key, "")).strip()
            if value:
                self._found.setdefault(value, []).append(store)

    def store_for(self, platform_store: str) -> str:
        """The POS store id, or ValueError saying what to configure."""
        if platform_store in self._explicit:
            return self._explicit[platform_store]
        found = self._found.get(platform_store, [])
        if len(found) == 1:
            return found[0]
        if found:
            raise ValueError(
                f"{platform_store} is the {self._target.type}.{self._route_key} of stores "
                f"{', '.join(sorted(found))}: name one in the order source's stores"
            )
        raise ValueError(
            f"{platform_store} is no store's {self._target.type}.{self._route_key}: add it "
            "to the order source's stores or to a store's table in [central.stores]"
        )


class SkuMap:
    """A commerce SKU → the POS item id: the SKU table read backwards for the target; in
    `direct` mode a SKU the table does not name is the POS id itself."""

    def __init__(self, table: SkuTable, target: TargetSettings, mode: str) -> None:
        self._direct = mode == "direct"
        back: dict[str, set[str]] = {}
        scopes: Sequence[Mapping[str, str]] = (
            table.shared,
            table.by_target.get(target.type, {}),
            table.by_target.get(target.name, {}),
        )
        # Narrower scopes win, as they do going up (SkuTable.lookup).
        for scope in scopes:
            for pos, sku in scope.items():
                for other in [p for p, s in back.items() if pos in s]:
                    back[other].discard(pos)
                back.setdefault(sku, set()).add(pos)
        self._back = {sku: sorted(pos) for sku, pos in back.items() if pos}

    def pos_sku(self, sku: str) -> str:
        """The POS item id of commerce `sku`, or ValueError naming the missing mapping."""
        found = self._back.get(sku, [])
        if len(found) == 1:
            return found[0]
        if found:
            raise ValueError(f"SKU {sku} is the commerce SKU of POS items {', '.join(found)}")
        if self._direct:
            return sku
        raise ValueError(f"SKU {sku} has no POS item in the SKU table")


def cents(amount: int, digits: int) -> Decimal:
    """A platform's minor-unit amount as the decimal the contract carries."""
    return Decimal(int(amount)).scaleb(-int(digits))
