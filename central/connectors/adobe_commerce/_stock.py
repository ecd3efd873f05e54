"""Adobe Commerce stock: a POS level sets the MSI source item's quantity; a POS movement
is written as the level it leads to, so a resend writes that same level again and never
counts twice.

A source item takes absolute quantities only, and Magento keeps nothing beside it where a
movement could be noted as applied. So a movement is turned into a level from what the
relay itself confirmed: the level this target last posted for the same item (its ref,
`source/sku@level`, handed back as `Routed.level_ref`) plus the movement's delta. That
sum depends only on the relay's own state, which moves only when a delivery is posted:
every attempt of one movement (after a lost answer, or after a relay died between the
write and its record) writes the same level, and updates of one item go one at a time.
A movement written but never confirmed (its attempts ran out) is undone by the next
update of the item, which builds on the last confirmed level, not on it; retried later,
it is applied then, once.

When the relay has confirmed no level of the item yet, the first movement reads the
quantity Magento holds (`GET /V1/inventory/source-items`, ACL
`Magento_InventoryApi::source`) and notes it without writing: a hold that uses no attempt,
its ref (`before source/sku@quantity`) handed back as `Routed.noted`. The write comes on
the next attempt, from the noted quantity, so a read after a write of its own can never
be mistaken for the starting point.

The POS owns the store's source quantity: a change made in Magento meanwhile is
overwritten by the next movement, as by the next count.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

__all__ = ["BEFORE", "level_in", "level_ref", "noted_ref", "source_item_query"]

BEFORE = "before "
"""The prefix of the quantity noted before a first movement (a hold's ref)."""


def level_ref(source: str, sku: str, level: Decimal) -> str:
    """The ref of a posted stock update: the item and the level it wrote."""
    return f"{source}/{sku}@{level}"


def noted_ref(source: str, sku: str, level: Decimal) -> str:
    """The ref a first movement notes: the quantity Magento held before it."""
    return BEFORE + level_ref(source, sku, level)


def level_in(ref: str | None, source: str, sku: str) -> Decimal | None:
    """The level `ref` states for this item (None when it names another item, or was
    written before refs carried a level)."""
    prefix = f"{source}/{sku}@"
    if not ref or not ref.startswith(prefix):
        return None
    try:
        level = Decimal(ref[len(prefix) :])
    except InvalidOperation:
        return None
    return level if level.is_finite() else None


def source_item_query(source: str, sku: str) -> dict[str, str]:
    """searchCriteria for one source item: two filter groups, which Magento ANDs (filters
    within one group are ORed)."""
    base = "searchCriteria[filter_groups]"
    return {
        f"{base}[0][filters][0][field]": "sku",
        f"{base}[0][filters][0][value]": sku,
        f"{base}[0][filters][0][condition_type]": "eq",
        f"{base}[1][filters][0][field]": "source_code",
        f"{base}[1][filters][0][value]": source,
        f"{base}[1][filters][0][condition_type]": "eq",
    }
