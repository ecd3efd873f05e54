"""Adobe Commerce target settings: the shop, its credentials and how credit memos and
source items are written."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from .._base import TargetSettings

__all__ = ["AdobeCommerceSettings"]


class AdobeCommerceSettings(TargetSettings):
    type: Literal["adobe_commerce"] = "adobe_commerce"
    base_url: str = Field(
        pattern=r"^https?://", description="Shop URL; the API is {base_url}/rest."
    )
    store_code: str = Field(default="all", description="Store code in /rest/{store_code}/V1.")
    token: SecretStr | None = Field(default=None, description="Integration access token.")
    token_file: str | None = Field(default=None, description="File holding the token.")
    integration_auth: Literal["oauth1", "bearer"] = Field(
        default="oauth1",
        description="oauth1: sign each call with the integration's four credentials; "
        "bearer: send the access token alone (only where the shop allows it).",
    )
    consumer_key: str = Field(default="", description="Integration consumer key (oauth1).")
    consumer_secret: SecretStr | None = Field(default=None, description="Consumer secret.")
    consumer_secret_file: str | None = Field(default=None, description="File holding it.")
    token_secret: SecretStr | None = Field(
        default=None, description="Integration access token secret (oauth1)."
    )
    token_secret_file: str | None = Field(default=None, description="File holding it.")
    username: str | None = Field(default=None, description="Admin user, when no token is given.")
    password: SecretStr | None = Field(default=None, description="Admin password.")
    password_file: str | None = Field(default=None, description="File holding the password.")
    source_items_batch: int = Field(
        default=20,
        ge=1,
        le=500,
        description="Source items per request; Magento takes at most 20 list entries "
        "per request unless the shop raised its input limit.",
    )
    guest_email: str = Field(
        default="pos-sales@example.invalid",
        description="customer_email of POS orders without a customer (Magento requires one).",
    )
    return_to_stock: bool = Field(
        default=False,
        description="With refund_items: put returned items back to stock with the memo.",
    )
    refund_items: bool = Field(
        default=False,
        description="Credit memos list the returned items and quantities. Magento then "
        "writes a compensating MSI reservation for items it never shipped, which lifts the "
        "salable quantity above the POS's level (magento/inventory#2773); off: the memo "
        "refunds the POS amount as an adjustment and names the items in its comment, and "
        "stock follows the POS's levels.",
    )

    def missing(self) -> list[str]:
        if self.dry_run or (self.username and self.password and not self.token):
            return []
        if self.token:
            if self.integration_auth == "bearer":
                return []
            wanted = {
                "consumer_key": self.consumer_key,
                "consumer_secret_file": self.consumer_secret,
                "token_secret_file": self.token_secret,
            }
            return [k for k, v in wanted.items() if not v]
        return ["token_file"] if not self.username else ["password_file"]
