"""Reference data to the store, on the downlink: customers with their loyalty tier, and
items with their prices, each the whole current state of one entity (a later message for
the same entity replaces an earlier one, so a store back from a long absence needs only
the newest), and the purge of a customer everywhere.

Only what a till needs travels: a customer's contact fields only where the CRM marks them
shareable, prices only for the channel, customer group and currency the store sells in.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ._money import Amount

__all__ = [
    "REFERENCE_KINDS",
    "CustomerPurge",
    "ItemPrice",
    "RefCustomer",
    "RefItem",
    "ResyncDone",
    "reference_entity",
    "reference_key",
]

_ID = Annotated[str, Field(min_length=1, max_length=128)]
_CURRENCY = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]

REFERENCE_KINDS = ("customer", "customer_purge", "item", "resync_done")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class RefCustomer(_Model):
    """A customer as the till should recognise them: identifiers, loyalty tier and
    preferences, and contact fields only where the CRM allows them to leave. Contact
    data: never logged, encrypted at rest at the store."""

    kind: Literal["customer"] = "customer"
    source: str = Field(min_length=1, max_length=64, description="The feed: salesforce, …")
    customer_id: _ID = Field(description="The CRM's id of the person.")
    version: str = Field(
        min_length=1, max_length=64, description="The CRM's change stamp (SystemModstamp)."
    )
    loyalty_id: str | None = Field(default=None, max_length=128)
    pos_customer_id: str | None = Field(default=None, max_length=128)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=40)
    tier: str | None = Field(default=None, max_length=64, description="Loyalty tier name.")
    points: Decimal | None = Field(default=None, description="Loyalty points balance.")
    preferences: dict[str, str] = Field(default_factory=dict, max_length=50)
    home_store: str | None = Field(default=None, max_length=64)
    changed_at: AwareDatetime


class CustomerPurge(_Model):
    """Forget this customer at the store (a privacy request): every field, every copy."""

    kind: Literal["customer_purge"] = "customer_purge"
    source: str = Field(min_length=1, max_length=64)
    customer_id: _ID
    requested_at: AwareDatetime
    version: str = Field(default="purge", max_length=64)


class ItemPrice(_Model):
    amount: Amount
    currency: _CURRENCY
    channel: str | None = Field(default=None, max_length=128)
    customer_group: str | None = Field(default=None, max_length=128)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None


class RefItem(_Model):
    """An item as the till sells it: the POS item id, the commerce SKU it is, its name,
    and the prices that apply at this store."""

    kind: Literal["item"] = "item"
    source: str = Field(min_length=1, max_length=64, description="The feed: commercetools, …")
    sku: _ID = Field(description="The POS item id.")
    commerce_sku: _ID
    product_id: str | None = Field(default=None, max_length=128)
    version: str = Field(min_length=1, max_length=64, description="The platform's version.")
    name: str = Field(default="", max_length=500)
    active: bool = True
    prices: list[ItemPrice] = Field(default_factory=list, max_length=50)
    attributes: dict[str, str] = Field(default_factory=dict, max_length=100)
    changed_at: AwareDatetime


class ResyncDone(_Model):
    """Central queued everything of `scope` that concerns the store for the request made
    at `requested_at` (possibly nothing at all): the store's request is answered."""

    kind: Literal["resync_done"] = "resync_done"
    scope: Literal["customers", "items"]
    requested_at: AwareDatetime


def reference_entity(body: RefCustomer | CustomerPurge | RefItem) -> str:
    """The entity a message is the state of: a later message for it replaces this one."""
    if isinstance(body, RefItem):
        return f"item:{body.source}:{body.sku}"
    return f"customer:{body.source}:{body.customer_id}"


def reference_key(body: RefCustomer | CustomerPurge | RefItem) -> str:
    """The key central queues it under for a store: once per entity and version."""
    return f"{body.kind}:{reference_entity(body)}:{body.version}"
