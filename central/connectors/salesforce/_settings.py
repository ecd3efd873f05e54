"""The settings of a Salesforce target: where tokens come from (the org's My Domain for
client credentials, the JWT audience apart from it), the objects and fields orders,
items, customers and payments go to, and how close to the daily API limit delivery
may go."""

from __future__ import annotations

from typing import Literal

import httpx
from pydantic import Field, SecretStr, model_validator

from .._base import TargetSettings

__all__ = ["LOGIN_HOSTS", "MatchKey", "SalesforceSettings"]

LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")
MatchKey = Literal["loyalty_id", "pos_customer_id", "email", "phone"]
_DEFAULT_RULE: tuple[MatchKey, ...] = ("loyalty_id", "pos_customer_id", "email", "phone")


class SalesforceSettings(TargetSettings):
    type: Literal["salesforce"] = "salesforce"
    kinds: list[str] = Field(
        default_factory=lambda: ["sale", "return", "void", "customer"],
        description="Record kinds sent here.",
    )
    login_url: str = Field(
        default="",
        pattern=r"^(https?://.+)?$",
        description="Where tokens are asked for: the org's My Domain URL "
        "(https://acme.my.salesforce.com), which the client-credentials flow requires; "
        "the JWT flow defaults to https://login.salesforce.com.",
    )
    jwt_audience: str = Field(
        default="https://login.salesforce.com",
        pattern=r"^https?://",
        description="The JWT `aud`: https://login.salesforce.com, or "
        "https://test.salesforce.com for a sandbox (not the My Domain URL).",
    )
    api_version: str = Field(
        default="v62.0", pattern=r"^v\d+\.\d$", description="REST API version."
    )
    auth_flow: Literal["client_credentials", "jwt"] = Field(
        default="client_credentials", description="OAuth flow."
    )
    client_id: str = Field(min_length=1, description="Connected app consumer key.")
    client_secret: SecretStr | None = Field(default=None, description="Consumer secret.")
    client_secret_file: str | None = Field(default=None, description="File holding it.")
    username: str = Field(default="", description="Integration user (JWT flow).")
    private_key_file: str | None = Field(default=None, description="PEM key (JWT flow).")
    account_id: str = Field(default="", description="Account of orders without a customer.")
    order_object: str = Field(default="Order", description="Order sObject.")
    order_external_id: str = Field(default="POS_Key__c", description="Order external id field.")
    order_tax_field: str = Field(
        default="",
        description="A currency field of the order (e.g. POS_Tax__c) that receives the tax "
        "the POS charged on top of its prices: an Order has no tax of its own, and its items "
        "add up to TotalAmount without it. Empty: not sent.",
    )
    order_total_field: str = Field(
        default="",
        description="A field of the order holding its total as Salesforce states it, read "
        "back after each collection (one query) and set beside the POS's total in "
        "reconciliation: TotalAmount (its items), or where order_tax_field is set a formula "
        "field adding that to it (e.g. POS_Total__c = TotalAmount + POS_Tax__c). Empty: not "
        "read, and the POS's total stands for Salesforce.",
    )
    order_item_object: str = Field(default="OrderItem", description="Order item sObject.")
    order_item_external_id: str = Field(
        default="POS_Line_Key__c", description="Order item external id field."
    )
    order_status: str = Field(default="Draft", description="Status of new orders.")
    void_status: str = Field(
        default="Cancelled",
        description="Status a void gives its original order (a value of the org's Order "
        "Status picklist).",
    )
    cancel_status: str = Field(
        default="Cancelled",
        description="Status of the order a basket abandoned before tender becomes (a value "
        "of the org's Order Status picklist).",
    )
    negative_quantities: bool = Field(
        default=False,
        description="The org allows negative quantities on orders (Setup > Order Settings); "
        "then a return whose sale Salesforce never received becomes an order of its own.",
    )
    payment_object: str = Field(
        default="",
        description="sObject taking one row per tender (e.g. a custom POS_Payment__c); "
        "empty: no payments are written.",
    )
    payment_external_id: str = Field(
        default="POS_Payment_Key__c", description="The payment object's external id field."
    )
    payment_fields: dict[str, str] = Field(
        default_factory=lambda: {
            "order": "Order__c",
            "amount": "Amount__c",
            "method": "Method__c",
            "date": "Payment_Date__c",
        },
        description="The payment object's field for each of order, amount, method, date, "
        "auth_code, card_brand, card_last4 (a name left out is not sent).",
    )
    payment_static: dict[str, str] = Field(
        default_factory=dict,
        description="Constant fields of every payment row (e.g. Status = Processed, "
        "ProcessingMode = External for the standard Payment object).",
    )
    limit_reserve_percent: float = Field(
        default=10,
        ge=0,
        le=90,
        description="Share of the org's daily API requests left to other integrations: "
        "delivery holds when less than this remains.",
    )
    limit_wait_seconds: float = Field(
        default=900,
        gt=0,
        description="How long delivery holds when the daily limit is near or reached.",
    )
    order_location_field: str = Field(
        default="",
        description="Order field that takes the store's `location` route (e.g. "
        "Store_Location__c); empty: not sent.",
    )
    customer_object: str = Field(default="Contact", description="Customer sObject.")
    match_rule: list[MatchKey] = Field(
        default_factory=lambda: list(_DEFAULT_RULE),
        description="How a POS customer is matched, in order.",
    )
    match_fields: dict[str, str] = Field(
        default_factory=lambda: {
            "loyalty_id": "Loyalty_Id__c",
            "pos_customer_id": "POS_Customer_Id__c",
            "email": "Email",
            "phone": "Phone",
        },
        description="The customer object's field for each match key; the first two are "
        "external id fields.",
    )
    profile_owner: Literal["salesforce", "pos"] = Field(
        default="salesforce",
        description="salesforce: link to a matched Contact, never overwrite it; "
        "pos: update it from the POS.",
    )

    @model_validator(mode="after")
    def _my_domain(self) -> SalesforceSettings:
        if self.auth_flow == "client_credentials" and _host(self.login_url) in LOGIN_HOSTS:
            raise ValueError(
                "login_url: the client-credentials flow needs the org's My Domain URL "
                f"(https://<domain>.my.salesforce.com), not {self.login_url}"
            )
        return self

    def missing(self) -> list[str]:
        if self.dry_run:
            return []
        if self.auth_flow == "jwt":
            return [k for k in ("username", "private_key_file") if not getattr(self, k)]
        wanted = {"login_url": self.login_url, "client_secret_file": self.client_secret}
        return [k for k, v in wanted.items() if not v]

    @property
    def token_url(self) -> str:
        base = self.login_url or "https://login.salesforce.com"
        return f"{base.rstrip('/')}/services/oauth2/token"


def _host(url: str) -> str:
    return httpx.URL(url).host if url else ""
