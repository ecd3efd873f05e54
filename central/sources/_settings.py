"""`[central.order_sources.NAME]`: where online orders come from and which of them go
down to a store. Kept apart from the pollers so the relay's config can import it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from common.settings import Section

__all__ = ["SOURCE_TYPES", "OrderSourceSettings"]

SOURCE_TYPES = ("commercetools", "adobe_commerce")

ADOBE_PICKUP_METHOD = "instore_pickup"
"""The shipping method of Adobe Commerce's in-store pickup (Magento_InventoryInStorePickup)."""


class OrderSourceSettings(Section):
    """One order source: a platform polled for orders changed since its durable cursor."""

    type: Literal["commercetools", "adobe_commerce"] = Field(
        description="The platform: commercetools or adobe_commerce."
    )
    target: str = Field(
        min_length=1,
        description="The [[central.targets]] entry of that type whose credentials read the "
        "orders; what the store does with an order is posted back to it.",
    )
    enabled: bool = Field(default=True, description="Poll this source.")
    interval_seconds: float = Field(default=30, gt=0, description="How often to poll.")
    page_size: int = Field(default=100, ge=1, le=500, description="Orders read per request.")
    lag_seconds: float = Field(
        default=10,
        ge=0,
        description="Orders changed in the last seconds wait for the next poll: a write "
        "still committing elsewhere cannot end up behind the cursor.",
    )
    first_run_hours: float = Field(
        default=24, gt=0, description="How far back the first poll reads (no cursor yet)."
    )
    pickup_methods: list[str] = Field(
        default_factory=list,
        description="Shipping method keys (commercetools) or codes (Adobe Commerce) of "
        f"orders the store hands over; Adobe Commerce default: {ADOBE_PICKUP_METHOD}.",
    )
    ship_from_store_methods: list[str] = Field(
        default_factory=list, description="Shipping methods of orders the store ships."
    )
    fulfilment_field: str = Field(
        default="",
        description="commercetools: the order's custom field whose value is pickup or "
        "ship_from_store (instead of, or before, the shipping method).",
    )
    store_field: str = Field(
        default="",
        description="commercetools: a custom field of the order holding the POS store id; "
        "Adobe Commerce: the order's extension attribute holding the pickup location "
        "(default pickup_location_code).",
    )
    stores: dict[str, str] = Field(
        default_factory=dict,
        description="The platform's store key (commercetools) or pickup location / source "
        "code (Adobe Commerce) → POS store id; without an entry, the store whose "
        '[central.stores."ID"] table for the target has that store / source_code.',
    )
    promised_field: str = Field(
        default="",
        description="commercetools: a custom DateTime field with the time promised to the "
        "customer (the store's past-promise count uses it).",
    )

    @model_validator(mode="after")
    def _chooses(self) -> OrderSourceSettings:
        if self.type == "adobe_commerce":
            if self.fulfilment_field or self.promised_field:
                raise ValueError(
                    "fulfilment_field and promised_field are commercetools custom fields"
                )
        elif not (self.pickup_methods or self.ship_from_store_methods or self.fulfilment_field):
            raise ValueError(
                "say which orders go to a store: pickup_methods, ship_from_store_methods "
                "or fulfilment_field"
            )
        both = set(self.pickup_methods) & set(self.ship_from_store_methods)
        if both:
            raise ValueError(f"shipping method {sorted(both)[0]} is both pickup and ship")
        return self

    @property
    def pickups(self) -> list[str]:
        """The pickup methods in force (Adobe Commerce's own when none are named)."""
        if self.type == "adobe_commerce" and not (
            self.pickup_methods or self.ship_from_store_methods
        ):
            return [ADOBE_PICKUP_METHOD]
        return self.pickup_methods

    @property
    def effective_store_field(self) -> str:
        if self.type == "adobe_commerce":
            return self.store_field or "pickup_location_code"
        return self.store_field
