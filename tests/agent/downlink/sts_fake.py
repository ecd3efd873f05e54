"""A Simphony Transaction Services Gen2 Checks API that behaves like the documented one,
for the `micros_sts` writer's tests (an `httpx.MockTransport` handler).

Each rule is a method named `rule_*` whose docstring cites the page it follows; a test
switches each one off in turn and shows that the request it refuses then gets through,
so no rule is decoration. Errors are RFC 7807 problem details, as the API answers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx

ORG, LOC, RVC = "tfoinc", "fdmnh144", 42
TOKEN = "id-token-of-the-store"
MENU = {4711, 815}
BASE = "https://sts.store.local/api/v1"


class Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class StsFake:
    def __init__(self) -> None:
        self.checks: dict[str, dict[str, Any]] = {}
        self.voided: list[str] = []
        self.off: set[str] = set()
        self.down = False
        self.requests: list[httpx.Request] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @property
    def rules(self) -> list[str]:
        return sorted(name for name in dir(self) if name.startswith("rule_"))

    def _apply(self, name: str, *args: Any) -> None:
        if name not in self.off:
            rule: Callable[..., None] = getattr(self, name)
            rule(*args)

    # -- the rules ------------------------------------------------------------------------

    def rule_bearer(self, request: httpx.Request) -> None:
        """Each request carries the client's OIDC ID token as a bearer (Transaction Services
        Generation 2 Client Authentication, docs.oracle.com/en/industries/food-beverage/
        simphony/simsg/transaction_services_generation_2_client_authentication.htm)."""
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise Refused(401, "Unauthorized")

    def rule_context_headers(self, request: httpx.Request) -> None:
        """Simphony-OrgShortName, Simphony-LocRef and Simphony-RvcRef (an integer) are
        required on every Checks API request (Header Parameters, docs.oracle.com/en/
        industries/food-beverage/simphony/stsgg/header_params.html)."""
        h = request.headers
        if not h.get("Simphony-OrgShortName") or not h.get("Simphony-LocRef"):
            raise Refused(400, "Simphony-OrgShortName and Simphony-LocRef are required")
        if not (h.get("Simphony-RvcRef") or "").isdigit():
            raise Refused(400, "Simphony-RvcRef must be an integer")
        if (h["Simphony-OrgShortName"], h["Simphony-LocRef"], int(h["Simphony-RvcRef"])) != (
            ORG,
            LOC,
            RVC,
        ):
            raise Refused(404, "revenue center not found")

    def rule_check_header(self, check: dict[str, Any]) -> None:
        """A request carrying a check takes its org, location and revenue center from the
        check's `header`, which is required (Checks API, docs.oracle.com/en/industries/
        food-beverage/simphony/omsstsg2api/api-checks-api.html; `header(required)` on Post
        calculate totals for a check, op-basepath-checks-calculator-post.html)."""
        header = check.get("header")
        if not isinstance(header, dict):
            raise Refused(400, "header is required")
        if (header.get("orgShortName"), header.get("locRef"), header.get("rvcRef")) != (
            ORG,
            LOC,
            RVC,
        ):
            raise Refused(400, "The Check provided is not valid: header names another RVC")

    def rule_unique_check_name(self, check: dict[str, Any]) -> None:
        """The check name must be unique among all open checks at the revenue center (Get a
        check, CheckHeader, docs.oracle.com/en/industries/food-beverage/simphony/stsgg/
        op-api-v1-checks-checkref-get.html)."""
        name = check.get("header", {}).get("checkName")
        if any(c["header"].get("checkName") == name for c in self.checks.values()):
            raise Refused(400, f"check name {name!r} is already used by an open check")

    def rule_known_menu_items(self, check: dict[str, Any]) -> None:
        """Menu items come from the revenue center's configuration (Checks API: "Configuration
        content (for example, menu items or discounts) from the Configuration API is used to
        populate a check", api-checks-api.html)."""
        items = check.get("menuItems") or []
        if not items:
            raise Refused(400, "The Check provided is not valid: no menu items")
        for entry in items:
            if entry.get("menuItemId") not in MENU:
                raise Refused(400, f"menu item {entry.get('menuItemId')} is not configured")

    # -- the API --------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        try:
            self._apply("rule_bearer", request)
            self._apply("rule_context_headers", request)
            return self._route(request)
        except Refused as exc:
            return httpx.Response(
                exc.status,
                json={"title": "Bad Request", "detail": exc.detail, "status": exc.status},
                headers={"Content-Type": "application/problem+json"},
            )

    def _route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/api/v1/checks":
            check = json.loads(request.content)
            self._apply("rule_check_header", check)
            self._apply("rule_unique_check_name", check)
            self._apply("rule_known_menu_items", check)
            ref = uuid.uuid4().hex
            stored = {**check, "header": {**check.get("header", {}), "checkRef": ref}}
            self.checks[ref] = stored
            return httpx.Response(201, json=stored)
        if request.method == "GET" and path == "/api/v1/checks":
            # Get a list of checks: open ones, closed too with includeClosed (op-basepath-
            # checks-get.html); voided checks are gone.
            return httpx.Response(200, json={"items": list(self.checks.values())})
        if request.method == "DELETE" and path.startswith("/api/v1/checks/"):
            ref = path.rsplit("/", 1)[1]
            if ref not in self.checks:
                raise Refused(404, "check not found")
            del self.checks[ref]
            self.voided.append(ref)
            return httpx.Response(
                204
            )  # Delete a check: 204 voided (op-api-v1-checks-checkref-delete.html)
        raise Refused(404, f"no route {request.method} {path}")
