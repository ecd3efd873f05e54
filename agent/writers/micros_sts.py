"""The `micros_sts` writer: each order as a check in Oracle Simphony, posted to
Simphony Transaction Services Gen2 (STS Gen2) on the store's network.

What the requests follow (Oracle's STS Gen2 API guide):
- `POST {basePath}/checks` creates a check, `GET {basePath}/checks` lists the open
  checks (closed ones too with `includeClosed=true`), `DELETE {basePath}/checks/{checkRef}`
  voids one; `{basePath}` is `https://host/api/v1` (Checks API,
  docs.oracle.com/en/industries/food-beverage/simphony/omsstsg2api/api-checks-api.html).
- The revenue center is named by the `Simphony-OrgShortName`, `Simphony-LocRef` and
  `Simphony-RvcRef` headers (header parameters,
  docs.oracle.com/en/industries/food-beverage/simphony/stsgg/header_params.html) and, for a
  request that carries a check, by its `header` (the Checks API page above).
- The client sends its OpenID Connect ID token as a bearer in `Authorization`
  (docs.oracle.com/en/industries/food-beverage/simphony/simsg/
  transaction_services_generation_2_client_authentication.htm).
- A check's `checkName` must be unique among the revenue center's open checks
  (Get a check, docs.oracle.com/en/industries/food-beverage/simphony/stsgg/
  op-api-v1-checks-checkref-get.html): the writer names each check after its order and
  looks for that name before posting, so a resend makes no second check.
- Errors come back as RFC 7807 problem details (`detail`).

The ID token is read from `token_file` at each request: whatever renews it (Simphony's
own OIDC client, a scheduled task) takes effect without a restart.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

import httpx

from agent.config import DownlinkSettings, MicrosStsSettings
from contract import OnlineOrder, OrderCancel

from ._base import DownItem, WriteError

__all__ = ["MicrosStsWriter", "check_name"]

_NAME_CHARS = 20
"""The POS client shows 20 characters of a check name (Get a check, as above)."""


def check_name(order_number: str) -> str:
    """The check's name: the order number, its last 20 characters when longer."""
    return order_number[-_NAME_CHARS:]


class MicrosStsWriter:
    name = "micros_sts"

    def __init__(
        self, settings: MicrosStsSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self._transport = transport

    @classmethod
    def from_settings(
        cls, settings: DownlinkSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> MicrosStsWriter:
        return cls(settings.micros_sts, transport)

    async def write(self, item: DownItem) -> str:
        async with httpx.AsyncClient(
            transport=self._transport,
            timeout=self.settings.timeout_seconds,
            trust_env=False,
        ) as client:
            try:
                if isinstance(item.body, OrderCancel):
                    return await self._cancel(client, item.body, item.prior)
                return await self._post(client, item.body)
            except httpx.HTTPError as exc:
                raise WriteError(f"STS Gen2 unreachable: {type(exc).__name__}: {exc}") from None

    # -- requests -------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        s = self.settings
        token_file = s.token_file
        assert token_file is not None  # the config refuses micros_sts without one
        return {
            "Authorization": f"Bearer {_token(token_file)}",
            "Simphony-OrgShortName": s.org_short_name,
            "Simphony-LocRef": s.loc_ref,
            "Simphony-RvcRef": str(s.rvc_ref),
            "Accept": "application/json",
        }

    async def _find(self, client: httpx.AsyncClient, name: str, since: str) -> str | None:
        """The checkRef of the check named `name` created since `since`, if any."""
        reply = await client.get(
            f"{self.base}/checks",
            params={"includeClosed": "true", "sinceTime": since},
            headers=self._headers(),
        )
        _raise_for(reply, "listing checks")
        data = reply.json()
        checks = data.get("items", data) if isinstance(data, dict) else data
        for check in checks if isinstance(checks, list) else []:
            header = check.get("header", {}) if isinstance(check, dict) else {}
            if header.get("checkName") == name:
                return str(header.get("checkRef") or "")
        return None

    async def _post(self, client: httpx.AsyncClient, order: OnlineOrder) -> str:
        name = check_name(order.order_number)
        since = order.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
        found = await self._find(client, name, since)
        if found is not None:
            return found or name  # posted before (the answer was lost): not again
        reply = await client.post(
            f"{self.base}/checks", json=self._check(order, name), headers=self._headers()
        )
        _raise_for(reply, f"posting order {order.order_number}")
        try:
            header = reply.json().get("header", {})
        except (ValueError, AttributeError):
            header = {}
        return str(header.get("checkRef") or name)

    def _check(self, order: OnlineOrder, name: str) -> dict[str, Any]:
        s = self.settings
        header: dict[str, Any] = {
            "orgShortName": s.org_short_name,
            "locRef": s.loc_ref,
            "rvcRef": s.rvc_ref,
            "checkName": name,
            "checkEmployeeRef": s.employee_ref,
        }
        if s.order_type_ref is not None:
            header["orderTypeRef"] = s.order_type_ref
        items = []
        for line in order.lines:
            if not line.sku.isdigit():
                raise WriteError(
                    f"order {order.order_number} line {line.line_id}: item {line.sku!r} is "
                    "not a Simphony menu item number",
                    permanent=True,
                )
            items.append({"menuItemId": int(line.sku), "quantity": float(line.quantity)})
        return {"header": header, "menuItems": items}

    async def _cancel(
        self, client: httpx.AsyncClient, cancel: OrderCancel, prior: str | None
    ) -> str:
        ref = prior
        if not ref:
            ref = await self._find(client, check_name(cancel.order_number), "2000-01-01T00:00Z")
        if not ref:
            return "no check"  # never posted: nothing to void
        reply = await client.delete(f"{self.base}/checks/{ref}", headers=self._headers())
        if reply.status_code == 404:
            return ref  # voided already
        _raise_for(reply, f"voiding order {cancel.order_number}")
        return ref


def _token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise WriteError(f"the STS Gen2 ID token file cannot be read: {exc}") from None
    if not token:
        raise WriteError(f"the STS Gen2 ID token file {path} is empty")
    return token


def _raise_for(reply: httpx.Response, doing: str) -> None:
    """2xx passes; 401/403, 408, 429 and 5xx are worth trying again as they are; any other
    4xx needs a change first (an unknown menu item, a name in use): permanent."""
    status = reply.status_code
    if status < 300:
        return
    detail = ""
    try:
        problem = reply.json()
        if isinstance(problem, dict):
            detail = str(problem.get("detail") or problem.get("details") or problem.get("title"))
    except ValueError:
        detail = reply.text[:200]
    retryable = status in (401, 403, 408, 429) or status >= 500
    raise WriteError(
        f"STS Gen2 answered {status} {doing}" + (f": {detail}" if detail else ""),
        permanent=not retryable,
    )
