"""commercetools inventory: a POS level sets the quantity of the SKU's entry for the
store's (or the location's) supply channel; a POS movement changes it by its delta.

A movement is applied once. The entry keeps the digests of the last movements applied to
it in a custom field (`posMovements`, a Set of String of the type `inventory_entry_type`),
written in the same versioned update as the quantity: a resend finds its digest and
changes nothing, and a concurrent change makes the update fail whole (409
`ConcurrentModification`), after which the entry is read again. The new quantity is sent
with `changeQuantity` against the version read, which is as exact as `addQuantity` under
that version and is what every commercetools server (and its mocks) implements.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx

from contract import Inventory, key_digest

from .._base import Answered, Exchange, Routed, Unfit, for_location

__all__ = ["MOVEMENTS_FIELD", "Inventories", "movement_id"]

CONFLICT_REREADS = 3
MOVEMENTS_FIELD = "posMovements"
MOVEMENTS_KEPT = 200
"""Digests kept per entry: a resend comes within hours, not after 200 later movements."""

Call = Callable[..., Awaitable[httpx.Response]]
Answer = Callable[..., Answered]


def movement_id(key: str) -> str:
    """The digest a movement leaves on its entry."""
    return key_digest(key, 24)


class Inventories:
    """Writes levels and movements; `call(method, path, trace, **kwargs)` is the
    connector's authorized call, `answer(response, reason="")` its error."""

    def __init__(self, call: Call, answer: Answer, entry_type: str) -> None:
        self._call = call
        self._answer = answer
        self._type = entry_type
        self._channels: dict[str, str] = {}

    async def _channel_id(self, key: str, trace: list[Exchange]) -> str:
        if key not in self._channels:
            response = await self._call("GET", f"/channels/key={quote(key, safe='')}", trace)
            if response.status_code == 404:
                raise Unfit(f"supply channel {key} does not exist in commercetools")
            if response.status_code != 200:
                raise self._answer(response)
            self._channels[key] = str(response.json()["id"])
        return self._channels[key]

    async def apply(self, routed: Routed, record: Inventory, trace: list[Exchange]) -> str:
        if record.quantity != record.quantity.to_integral_value():
            raise Unfit(f"quantity {record.quantity} is not whole")
        delta = record.mode == "delta"
        if delta and not self._type:
            raise Unfit(
                "a stock movement needs inventory_entry_type, the custom type whose "
                f"{MOVEMENTS_FIELD} field keeps the movements already applied"
            )
        quantity = int(record.quantity)
        sku = routed.skus.get(record.sku, record.sku)
        key = for_location(routed.route, "supply_channel", record.location)
        channel = await self._channel_id(key, trace)
        moved = movement_id(routed.key)
        # Input variables, not values pasted into the predicate: a SKU may hold any
        # character (docs.commercetools.com/api/predicates/query#input-variables).
        query = {
            "where": "sku = :sku and supplyChannel(id = :channel)",
            "var.sku": sku,
            "var.channel": channel,
        }
        for _ in range(CONFLICT_REREADS + 1):
            found = await self._call("GET", "/inventory", trace, params=query)
            if found.status_code != 200:
                raise self._answer(found)
            results = found.json().get("results", [])
            if not results:
                draft: dict[str, Any] = {
                    "sku": sku,
                    "supplyChannel": {"typeId": "channel", "id": channel},
                    # A movement of an item without an entry starts from nothing.
                    "quantityOnStock": quantity,
                }
                if delta:
                    draft["custom"] = self._custom([moved])
                created = await self._call("POST", "/inventory", trace, json=draft)
                if created.status_code in (200, 201):
                    return str(created.json()["id"])
                if _duplicate(created):
                    continue  # created meanwhile: read it and apply ours to it
                raise self._answer(created)
            entry = results[0]
            actions = self._actions(entry, quantity, moved if delta else None)
            if not actions:
                return str(entry["id"])
            body = {"version": entry["version"], "actions": actions}
            changed = await self._call("POST", f"/inventory/{entry['id']}", trace, json=body)
            if changed.status_code == 200:
                return str(entry["id"])
            if changed.status_code != 409:
                raise self._answer(changed)
        raise self._answer(
            changed, "the inventory entry kept changing under us (409 after re-reading)"
        )

    def _custom(self, movements: list[str]) -> dict[str, Any]:
        return {
            "type": {"typeId": "type", "key": self._type},
            "fields": {MOVEMENTS_FIELD: movements},
        }

    def _actions(
        self, entry: dict[str, Any], quantity: int, moved: str | None
    ) -> list[dict[str, Any]]:
        """The update that brings `entry` to the level (`moved` None) or applies the
        movement `moved` of `quantity` once; empty when nothing is left to do."""
        on_stock = int(entry.get("quantityOnStock", 0))
        if moved is None:
            if on_stock == quantity:
                return []
            return [{"action": "changeQuantity", "quantity": quantity}]
        custom = entry.get("custom") or {}
        fields = custom.get("fields") or {}
        done = list(fields.get(MOVEMENTS_FIELD) or [])
        if moved in done:
            return []
        change = {"action": "changeQuantity", "quantity": on_stock + quantity}
        kept = [*done, moved][-MOVEMENTS_KEPT:]
        if custom:
            type_ref = custom.get("type") or {}
            if type_ref.get("key") not in (None, self._type):
                raise Unfit(
                    f"inventory entry {entry['id']} has the custom type {type_ref.get('key')}, "
                    f"not {self._type}: the movements applied cannot be kept on it"
                )
            return [change, {"action": "setCustomField", "name": MOVEMENTS_FIELD, "value": kept}]
        return [change, {"action": "setCustomType", **self._custom(kept)}]


def _duplicate(response: httpx.Response) -> bool:
    if response.status_code != 400:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    errors = body.get("errors") if isinstance(body, dict) else None
    return any(isinstance(e, dict) and e.get("code") == "DuplicateField" for e in errors or [])
