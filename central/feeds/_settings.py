"""`[central.feeds.NAME]`: where reference data for the stores comes from (customers from
Salesforce, items and prices from commercetools or Adobe Commerce) and which stores each
part goes to. Kept apart from the pollers so the relay's config can import it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from common.settings import Section

__all__ = ["CONTACT_FIELDS", "FEED_TYPES", "FeedSettings"]

FEED_TYPES = ("salesforce", "commercetools", "adobe_commerce")

CONTACT_FIELDS = ("email", "phone")
"""Fields of a customer that leave the CRM only where its consent rule says so."""

_CUSTOMER_FIELDS = (
    "loyalty_id",
    "pos_customer_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "tier",
    "points",
    "home_store",
)

_DEFAULT_FIELDS = {
    "first_name": "FirstName",
    "last_name": "LastName",
    "email": "Email",
    "phone": "Phone",
}

_DEFAULT_CONSENT = {"email": "!HasOptedOutOfEmail", "phone": "!DoNotCall"}


class FeedSettings(Section):
    """One feed: a platform read for what changed since its durable cursor."""

    type: Literal["salesforce", "commercetools", "adobe_commerce"] = Field(
        description="The platform: salesforce (customers), commercetools or adobe_commerce "
        "(items and prices)."
    )
    target: str = Field(
        min_length=1,
        description="The [[central.targets]] entry of that type whose credentials read it.",
    )
    enabled: bool = Field(default=True, description="Poll this feed.")
    interval_seconds: float = Field(default=60, gt=0, description="How often to poll.")
    page_size: int = Field(default=200, ge=1, le=500, description="Entities read per request.")
    lag_seconds: float = Field(
        default=10,
        ge=0,
        description="Changes of the last seconds wait for the next poll: a write still "
        "committing elsewhere cannot end up behind the cursor.",
    )
    customers_to: Literal["all", "home_store"] = Field(
        default="all",
        description="salesforce: send each customer to every store, or only to their home "
        "store (the field mapped to home_store: a POS store id or a store's "
        "salesforce_location in the cross-reference).",
    )
    object: Literal["Contact", "Account"] = Field(
        default="Contact",
        description="salesforce: Contact, or Account for person accounts (IsPersonAccount).",
    )
    fields: dict[str, str] = Field(
        default_factory=lambda: dict(_DEFAULT_FIELDS),
        description="salesforce: customer field → the Salesforce field it is read from "
        f"({', '.join(_CUSTOMER_FIELDS)}).",
    )
    preferences: dict[str, str] = Field(
        default_factory=dict,
        description="salesforce: preference name at the till → the Salesforce field.",
    )
    consent: dict[str, str] = Field(
        default_factory=lambda: dict(_DEFAULT_CONSENT),
        description="salesforce: contact field (email, phone) → the checkbox that allows it "
        "to leave the CRM ('!Field' when the box forbids it). A contact field without a "
        "rule never leaves.",
    )
    share_field: str = Field(
        default="",
        description="salesforce: a checkbox that must be true for the customer to reach any "
        "store; one that turns false is purged at the stores.",
    )
    where: str = Field(
        default="",
        description="salesforce: an extra SOQL condition (e.g. Loyalty_Member__c = true).",
    )

    currency: str = Field(
        default="",
        pattern=r"^([A-Z]{3})?$",
        description="adobe_commerce: the currency of the products' prices (the website's "
        "base currency).",
    )

    @model_validator(mode="after")
    def _known_fields(self) -> FeedSettings:
        if self.type == "adobe_commerce" and not self.currency:
            raise ValueError("an adobe_commerce feed needs currency (its prices' currency)")
        if self.type != "salesforce":
            return self
        unknown = sorted(set(self.fields) - set(_CUSTOMER_FIELDS))
        if unknown:
            raise ValueError(
                f"fields.{unknown[0]}: not a customer field (use {', '.join(_CUSTOMER_FIELDS)})"
            )
        for name, value in {**self.fields, **self.preferences, **self.consent}.items():
            if not value.removeprefix("!").replace("_", "").replace(".", "").isalnum():
                raise ValueError(f"{name}: {value!r} is not a Salesforce field name")
        if self.customers_to == "home_store" and "home_store" not in self.fields:
            raise ValueError("customers_to = home_store needs fields.home_store")
        odd = sorted(set(self.consent) - set(CONTACT_FIELDS))
        if odd:
            raise ValueError(f"consent.{odd[0]}: consent rules are for {CONTACT_FIELDS}")
        return self
