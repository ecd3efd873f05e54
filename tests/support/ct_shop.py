"""A commercetools project in the third-party mock, set up as a shop that takes online
orders for pickup and ship-from-store: for the order-source and downlink tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

__all__ = ["Admin", "expanded", "place", "set_up"]


class Admin:
    """Direct calls to the mock with the project's admin scope: seeding a project and
    reading back what the relay wrote."""

    def __init__(self, url: str, project: str) -> None:
        token = httpx.post(
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": f"manage_project:{project}"},
            auth=("admin", "admin"),
        ).json()["access_token"]
        self.http = httpx.Client(
            base_url=f"{url}/{project}", headers={"Authorization": f"Bearer {token}"}
        )

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    def query(self, path: str, where: str) -> list[dict[str, Any]]:
        response = self.http.get(path, params={"where": where, "limit": 500})
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def get(self, path: str) -> dict[str, Any]:
        response = self.http.get(path)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def update(self, order: dict[str, Any], *actions: dict[str, Any]) -> dict[str, Any]:
        return self.post(
            f"/orders/{order['id']}", {"version": order["version"], "actions": list(actions)}
        )


def place(
    admin: Admin,
    number: str,
    *,
    method: str = "click-collect",
    store: str = "berlin-mitte",
    sku: str = "SKU-PEN-BLUE",
    quantity: int = 3,
    more: Sequence[tuple[str, int]] = (),
) -> dict[str, Any]:
    """An online order as the shop would have it: paid for, to pick up or ship; `more`
    adds lines (SKU, quantity) after the first."""
    zero = {"currencyCode": "EUR", "centAmount": 0}
    lines = [(sku, quantity), *more]
    return admin.post(
        "/orders/import",
        {
            "orderNumber": number,
            "totalPrice": {
                "currencyCode": "EUR",
                "centAmount": 999 * sum(q for _, q in lines),
            },
            "lineItems": [
                {
                    "name": {"en": "Pen"},
                    "variant": {"sku": line_sku},
                    "price": {"value": {"currencyCode": "EUR", "centAmount": 999}},
                    "quantity": line_quantity,
                    "taxRate": {
                        "name": "DE 19",
                        "amount": 0.19,
                        "includedInPrice": True,
                        "country": "DE",
                    },
                }
                for line_sku, line_quantity in lines
            ],
            "shippingAddress": {
                "country": "DE",
                "firstName": "Ada",
                "lastName": "Lovelace",
                "streetName": "Torstraße",
                "streetNumber": "1",
                "postalCode": "10119",
                "city": "Berlin",
            },
            "shippingInfo": {
                "shippingMethodName": method,
                "price": zero,
                "shippingRate": {"price": zero},
                "shippingMethod": {"typeId": "shipping-method", "key": method},
            },
            "store": {"typeId": "store", "key": store},
            "orderState": "Open",
        },
    )


def expanded(admin: Admin, order: dict[str, Any]) -> dict[str, Any]:
    """The order as the source reads it: with its shipping method expanded."""
    return admin.get(f"/orders/{order['id']}?expand=shippingInfo.shippingMethod")


def set_up(url: str, project: str) -> Admin:
    """A project with pens, a tax category, three shipping methods and two stores."""
    admin = Admin(url, project)
    kind = admin.post("/product-types", {"key": "pen", "name": "Pen", "description": "Pens"})
    admin.post(
        "/products",
        {
            "key": "pens",
            "name": {"en": "Pens"},
            "slug": {"en": "pens"},
            "productType": {"typeId": "product-type", "id": kind["id"]},
            "masterVariant": {"sku": "SKU-PEN-BLUE"},
            "variants": [{"sku": "SKU-PEN-RED"}],
            "publish": True,
        },
    )
    rate = {"name": "DE 19", "amount": 0.19, "includedInPrice": True, "country": "DE"}
    tax = admin.post("/tax-categories", {"key": "standard", "name": "Standard", "rates": [rate]})
    zone = admin.post("/zones", {"key": "de", "name": "DE", "locations": [{"country": "DE"}]})
    for key in ("click-collect", "ship-from-store", "home-delivery"):
        admin.post(
            "/shipping-methods",
            {
                "key": key,
                "name": key,
                "isDefault": False,
                "taxCategory": {"typeId": "tax-category", "id": tax["id"]},
                "zoneRates": [
                    {
                        "zone": {"typeId": "zone", "id": zone["id"]},
                        "shippingRates": [{"price": {"currencyCode": "EUR", "centAmount": 0}}],
                    }
                ],
            },
        )
    for key in ("berlin-mitte", "hamburg"):
        admin.post("/stores", {"key": key, "name": {"en": key}})
    return admin
