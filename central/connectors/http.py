"""A plain HTTP target: each record `PUT` as JSON to `{url}/records/{key}`; after an
attempt that may have arrived, `GET` that address first and send only if it is absent.

The sandbox target for demos and fault runs (a recording server counts what it was
sent), and a bridge to an in-house integration layer. `PUT` by idempotency key makes
a repeat harmless on any server that stores by the path. Every call carries the record's
correlation id in `X-Correlation-ID`, as well as in the body.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr

from ._base import (
    DeliveryResult,
    Exchange,
    Outcome,
    Routed,
    TargetSettings,
    Traced,
    correlation,
    outcome_for,
    transport_failure,
)

__all__ = ["HttpConnector", "HttpSettings", "dry_run_response"]


class HttpSettings(TargetSettings):
    type: Literal["http"] = "http"
    maps_required: bool = Field(
        default=False, description="The POS tender types go as they are unless mapped."
    )
    url: str = Field(
        pattern=r"^https?://", description="Base URL; records go to {url}/records/{key}."
    )
    token: SecretStr | None = Field(default=None, description="Bearer token, if the server asks.")
    token_file: str | None = Field(default=None, description="File holding the bearer token.")


class HttpConnector:
    name = "http"
    required_route: tuple[str, ...] = ()

    def __init__(self, settings: HttpSettings, client: httpx.AsyncClient):
        self._settings = settings
        self._http = Traced(
            client, keep_full=settings.dry_run, correlation_header="X-Correlation-ID"
        )
        self._base = settings.url.rstrip("/")
        token = settings.token.get_secret_value() if settings.token else None
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def deliver(self, records: Sequence[Routed]) -> DeliveryResult:
        result = DeliveryResult()
        for routed in records:
            trace: list[Exchange] = []
            correlation.set(routed.correlation_id)
            body = {
                "key": routed.key,
                "correlation_id": routed.correlation_id,
                "route": dict(routed.route),
                "skus": dict(routed.skus),
                "payments": dict(routed.payments),
                "tax_codes": dict(routed.tax_codes),
                "original_ref": routed.original_ref,
                "record": json.loads(routed.record.model_dump_json()),
            }
            url = f"{self._base}/records/{quote(routed.key, safe='')}"
            try:
                if routed.attempts:
                    # An earlier attempt may have arrived: ask before sending again.
                    found = await self._http.request("GET", url, trace, headers=self._headers)
                    if found.status_code == 200:
                        result.accepted.append(
                            Outcome(routed.id, status=200, ref=routed.key, exchanges=trace)
                        )
                        continue
                    if found.status_code != 404:
                        result.add(*outcome_for(routed, found, trace))
                        continue
                response = await self._http.request(
                    "PUT",
                    url,
                    trace,
                    json=body,
                    headers={**self._headers, "Idempotency-Key": routed.key},
                )
            except httpx.HTTPError as exc:
                result.retry.append(transport_failure(routed, exc, trace))
                continue
            verdict, outcome = outcome_for(routed, response, trace)
            if verdict == "accepted":
                outcome.ref = routed.key
            result.add(verdict, outcome)
        return result

    async def aclose(self) -> None:
        return None


def dry_run_response(request: httpx.Request) -> httpx.Response:
    if request.method == "GET":
        return httpx.Response(404, json={"error": "no such record"})
    return httpx.Response(200, json={"stored": True})
