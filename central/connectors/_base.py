"""The seam between the relay and a target system: what a connector is given (routed
records), what it answers (accepted, retry, rejected, with every HTTP exchange for the
audit trail), and the settings every target shares.

Connectors never sleep, retry or buffer: `central.delivery` owns the schedule.

Errors inside a connector, and the verdict each gives a record (`settle`):

    ConnectorError
    ├── Answered   an HTTP answer decides it: `classify` says accepted, retry or rejected
    ├── Held       the target's usage limit is near or reached: held, no attempt counted
    └── Unfit      the record cannot be written as the target needs it: rejected
    httpx.HTTPError (no answer at all, it may have been applied): retry
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

import httpx
from pydantic import Field

from common.redact import redact_text
from common.settings import Section
from contract import Record

__all__ = [
    "Answered",
    "Connector",
    "ConnectorError",
    "ConnectorFactory",
    "DeliveryResult",
    "DryRunResponder",
    "DryRunTransport",
    "Exchange",
    "Held",
    "Outcome",
    "Routed",
    "TargetSettings",
    "Traced",
    "Unfit",
    "classify",
    "correlation",
    "excerpt",
    "for_location",
    "json_body",
    "outcome_for",
    "retry_after_seconds",
    "settle",
    "spread",
    "transport_failure",
]

EXCERPT_CHARS = 600


def excerpt(text: str | bytes | None, limit: int = EXCERPT_CHARS) -> str:
    """A redacted, bounded piece of a request or response body for the audit trail."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = redact_text(text)
    return text if len(text) <= limit else text[:limit] + "…"


_EXACT = "\u0000exact:"
_EXACT_STRING = re.compile(r'"\\u0000exact:(-?[0-9]+(?:\.[0-9]+)?)"')


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be sent as a JSON number")
        return f"{_EXACT}{value:f}"
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(v) for v in value]
    if isinstance(value, float):
        raise TypeError("money and quantities go as Decimal, never as float")
    return value


def json_body(value: Any) -> bytes:
    """`value` as JSON, each `Decimal` written as the exact number it holds ("12.30"
    stays 12.30, never the nearest float). Floats are refused: they have no place in
    what the POS counted."""
    text = json.dumps(_exact(value), ensure_ascii=False, separators=(",", ":"))
    return _EXACT_STRING.sub(r"\1", text).encode()


class TargetSettings(Section):
    """Keys every `[[central.targets]]` entry has; each connector adds its own."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="This target's name.")
    type: str = Field(description="The connector: commercetools, adobe_commerce, salesforce, http.")
    kinds: list[str] = Field(
        default_factory=lambda: ["sale", "return", "void", "inventory"],
        description="Record kinds sent to this target.",
    )
    dry_run: bool = Field(
        default=False,
        description="Record the exact requests in the audit trail instead of sending them.",
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="Requests in flight at once.")
    batch_size: int = Field(
        default=20, ge=1, le=200, description="Records handed to the connector at once."
    )
    timeout_seconds: float = Field(default=30, gt=0, description="Per-request timeout.")
    max_attempts: int = Field(
        default=12, ge=1, le=1000, description="Attempts before a record becomes an exception."
    )
    retry_min_seconds: float = Field(default=2, gt=0, description="First retry delay.")
    retry_max_seconds: float = Field(default=900, gt=0, description="Longest retry delay.")
    breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failed calls that open the circuit."
    )
    breaker_reset_seconds: float = Field(
        default=30, gt=0, description="How long an open circuit waits before one trial call."
    )
    maps_required: bool = Field(
        default=True,
        description="Tender types must be mapped to payment methods in [central.routing]; "
        "nothing is guessed.",
    )
    route_fields: list[str] = Field(
        default_factory=list,
        description="Extra per-store routing keys this target requires (beyond the connector's).",
    )
    imbalance: Literal["hold", "post"] = Field(
        default="hold",
        description="A POS transaction that does not balance (its `imbalance`, or its tenders' "
        "`tender_imbalance`, is not zero): `hold` keeps it in the exception queue for this "
        "target until a person retries or resolves it; `post` posts it as the POS stated it "
        "and reconciliation flags it.",
    )

    def missing(self) -> list[str]:
        """Keys this target cannot work without that the file leaves empty (checked after
        secret files are read; a dry run sends nothing and needs no credentials)."""
        return []


@dataclass(frozen=True)
class Routed:
    """One inbox record, resolved for one target by `central.routing`.

    `route` is the store's table for this target type (e.g. commercetools `store`,
    `supply_channel`) plus the store-wide `country`, `currency` and `tax_mode`. Every
    SKU, tender and tax code of the record has an entry in `skus`, `payments` and
    `tax_codes` (routing refused the record otherwise). `original_ref` is what this
    target answered for the sale a return or void links to.
    """

    id: int
    key: str
    correlation_id: str
    record: Record
    route: Mapping[str, str]
    skus: Mapping[str, str] = field(default_factory=dict)
    payments: Mapping[str, str] = field(default_factory=dict)
    tax_codes: Mapping[str, str] = field(default_factory=dict)
    attempts: int = 0
    original_ref: str | None = None
    noted: str | None = None
    """What this connector noted on an earlier attempt of the record (an outcome's `ref`
    on a retry or hold), or None."""
    level_ref: str | None = None
    """A stock movement: this target's ref for the last update of the same item it
    confirmed (the latest posted, whatever its seq), or None when none was."""

    @property
    def kind(self) -> str:
        return self.record.kind


@dataclass(frozen=True)
class Exchange:
    """One HTTP request and its answer (or the transport error), as the audit keeps it."""

    method: str
    url: str
    status: int | None
    request: str = ""
    response: str = ""
    error: str = ""
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "request": self.request,
            "response": self.response,
            "error": self.error,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


@dataclass
class Outcome:
    """What happened to one record. `ref` is the target's own id for it (order id, …)."""

    id: int
    reason: str = ""
    status: int | None = None
    ref: str | None = None
    retry_after: float | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    confirmed: Decimal | None = None
    """For an accepted sale: the total the target itself states for it (signed as the POS
    signs it), which reconciliation sets beside the POS's; None where the answer has none."""
    hold: bool = False
    """A retry that uses no attempt: the target asked for it as a whole (a usage limit
    reached or near), or the connector noted what it needs before it writes (its `ref`,
    handed back as `Routed.noted`). The relay waits `retry_after` seconds."""


@dataclass
class DeliveryResult:
    accepted: list[Outcome] = field(default_factory=list)
    retry: list[Outcome] = field(default_factory=list)
    rejected: list[Outcome] = field(default_factory=list)

    def extend(self, other: DeliveryResult) -> None:
        self.accepted += other.accepted
        self.retry += other.retry
        self.rejected += other.rejected

    def add(self, verdict: Literal["accepted", "retry", "rejected"], outcome: Outcome) -> None:
        getattr(self, verdict).append(outcome)


class Connector(Protocol):
    """A target system. `deliver` says what happened to each record, exactly once each."""

    name: str
    required_route: tuple[str, ...]
    """Per-store routing keys the connector cannot work without."""

    async def deliver(self, records: Sequence[Routed]) -> DeliveryResult: ...

    async def aclose(self) -> None: ...


ConnectorFactory = Callable[[Any, httpx.AsyncClient], Connector]
DryRunResponder = Callable[[httpx.Request], httpx.Response]


correlation: ContextVar[str | None] = ContextVar("tillbridge_correlation", default=None)
"""The correlation id of the record being written; a connector sets it per record (each
concurrent `deliver` runs in its own task, so each sees its own)."""


def spread(amount: Decimal, weights: Sequence[Decimal], exponent: int) -> list[Decimal]:
    """`amount` in shares proportional to `weights`, each in the currency's minor unit and
    together exactly `amount` (largest remainders get the leftover units); nothing to
    spread, or nothing to spread it over, gives zeros."""
    shares = [Decimal(0)] * len(weights)
    base = sum(weights, Decimal(0))
    if not amount or not base:
        return shares
    if amount < 0:
        return [-share for share in spread(-amount, weights, exponent)]
    unit = Decimal(1).scaleb(-exponent)
    exact = [amount * w / base for w in weights]
    shares = [(e / unit).to_integral_value(rounding="ROUND_FLOOR") * unit for e in exact]
    left = int((amount - sum(shares, Decimal(0))) / unit)
    order = sorted(range(len(weights)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in order[:left]:
        shares[i] += unit
    return shares


def for_location(route: Mapping[str, str], name: str, location: str) -> str:
    """The route's `name` for an inventory location: `"name@LOCATION"` where the store's
    table maps that location (a back room to its own source or channel), else `name`."""
    return route.get(f"{name}@{location}") or route[name]


class Traced:
    """An `httpx.AsyncClient` wrapper that notes each exchange in the list given per call.

    Request bodies and responses are kept as redacted excerpts (whole request bodies
    with `keep_full`, which dry-run targets use); headers are never kept (they carry
    tokens). Transport errors are noted and re-raised. With `correlation_header`, each
    call carries the current record's correlation id in that header, as
    `correlation_value` writes it where the platform documents a shape around it
    (Salesforce's `client=…`); the bare id otherwise. The id comes from a store, so any
    character a header cannot carry as it is (outside visible ASCII) goes as `_`: an id
    with a line break or an `é` never fails a call, let alone its batch.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        keep_full: bool = False,
        clock: Callable[[], float] = time.monotonic,
        correlation_header: str | None = None,
        correlation_value: Callable[[str], str] = str,
    ):
        self.client = client
        self._correlation_header = correlation_header
        self._correlation_value = correlation_value
        self._limit = 1_000_000 if keep_full else EXCERPT_CHARS
        self._clock = clock

    async def request(
        self,
        method: str,
        url: str,
        trace: list[Exchange] | None,
        **kwargs: Any,
    ) -> httpx.Response:
        current = correlation.get()
        if self._correlation_header and current:
            kwargs["headers"] = {
                **(kwargs.get("headers") or {}),
                self._correlation_header: _HEADER_UNSAFE.sub("_", self._correlation_value(current)),
            }
        if "json" in kwargs:
            # Every connector's JSON goes through json_body: decimals stay exact.
            headers = {**(kwargs.pop("headers", None) or {}), "Content-Type": "application/json"}
            kwargs["content"] = json_body(kwargs.pop("json"))
            kwargs["headers"] = headers
        request = self.client.build_request(method, url, **kwargs)
        started = self._clock()
        body = request.content if request.content else b""
        try:
            response = await self.client.send(request)
        except httpx.HTTPError as exc:
            if trace is not None:
                trace.append(
                    Exchange(
                        method,
                        _public_url(request.url),
                        None,
                        request=excerpt(body, self._limit),
                        error=f"{type(exc).__name__}: {exc}"[:200],
                        elapsed_ms=(self._clock() - started) * 1000,
                    )
                )
            raise
        if trace is not None:
            trace.append(
                Exchange(
                    method,
                    _public_url(request.url),
                    response.status_code,
                    request=excerpt(body, self._limit),
                    response=excerpt(response.content),
                    elapsed_ms=(self._clock() - started) * 1000,
                )
            )
        return response

    async def authorized(
        self,
        method: str,
        url: str,
        trace: list[Exchange] | None,
        token: Callable[[bool], Awaitable[str]],
        **kwargs: Any,
    ) -> httpx.Response:
        """A call with `Authorization: Bearer`; after a 401, `token(True)` fetches a new
        token and the call is made once more (the answer of that try stands)."""
        headers = dict(kwargs.pop("headers", None) or {})
        for fresh in (False, True):
            headers["Authorization"] = f"Bearer {await token(fresh)}"
            response = await self.request(method, url, trace, headers=headers, **kwargs)
            if response.status_code != 401:
                break
        return response


_HEADER_UNSAFE = re.compile(r"[^\x21-\x7e]")


def _public_url(url: httpx.URL) -> str:
    """The URL without credentials or secret-looking query values."""
    return redact_text(str(url.copy_with(username=None, password=None)))


def retry_after_seconds(response: httpx.Response, *, cap: float = 3600) -> float | None:
    """`Retry-After` as seconds (delta or HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), cap)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), cap)


RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def classify(response: httpx.Response) -> Literal["accepted", "retry", "rejected"]:
    """The one place that decides retryable versus permanent for an HTTP answer.

    2xx is accepted. 408, 425, 429 and 5xx other than 501 are retried, as is 401/403
    (credentials are fixed by a person, and records must not pile into the exception
    queue meanwhile: the breaker opens and the retry cap still ends in an exception).
    Every other 4xx is a rejection for good: sending the same body again cannot help.
    """
    status = response.status_code
    if 200 <= status < 300:
        return "accepted"
    if status in RETRYABLE_STATUS or (status >= 500 and status != 501) or status in (401, 403):
        return "retry"
    return "rejected"


def outcome_for(
    record: Routed, response: httpx.Response, trace: list[Exchange], reason: str = ""
) -> tuple[Literal["accepted", "retry", "rejected"], Outcome]:
    """The verdict and outcome for a record whose last answer was `response`."""
    verdict = classify(response)
    if not reason and verdict != "accepted":
        request = response.request
        reason = (
            f"{request.method} {request.url.path} answered {response.status_code}: "
            f"{excerpt(response.text, 300)}"
        )
    return verdict, Outcome(
        record.id,
        reason=reason,
        status=response.status_code,
        retry_after=retry_after_seconds(response) if verdict == "retry" else None,
        exchanges=trace,
    )


def transport_failure(record: Routed, exc: httpx.HTTPError, trace: list[Exchange]) -> Outcome:
    """A retry outcome for a request that got no answer (it may have been applied)."""
    reason = f"no answer: {type(exc).__name__}: {exc}"[:300]
    return Outcome(record.id, reason=reason, exchanges=trace)


class ConnectorError(Exception):
    """Base of what a connector raises while writing one record."""


class Answered(ConnectorError):
    """An HTTP answer that decides the record's verdict; `reason` in the target's words."""

    def __init__(self, response: httpx.Response, reason: str) -> None:
        super().__init__(reason)
        self.response = response
        self.reason = reason


class Held(ConnectorError):
    """The target asked us to stay away for `wait` seconds (a usage limit)."""

    def __init__(self, reason: str, wait: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class Unfit(ConnectorError):
    """The record cannot be written as the target needs it: a rejection, with why."""


def settle(
    result: DeliveryResult, routed: Routed, trace: list[Exchange], exc: BaseException
) -> None:
    """Record the verdict an error gives `routed`; anything else is re-raised."""
    if isinstance(exc, Answered):
        result.add(*outcome_for(routed, exc.response, trace, exc.reason))
    elif isinstance(exc, Held):
        outcome = Outcome(routed.id, reason=exc.reason, exchanges=trace, retry_after=exc.wait)
        outcome.hold = True
        result.retry.append(outcome)
    elif isinstance(exc, Unfit):
        result.rejected.append(Outcome(routed.id, reason=str(exc), exchanges=trace))
    elif isinstance(exc, httpx.HTTPError):
        result.retry.append(transport_failure(routed, exc, trace))
    else:
        raise exc


async def deliver_each(
    records: Iterable[Routed],
    post: Callable[[Routed, list[Exchange]], Awaitable[str]],
    confirmed: dict[int, Any],
    result: DeliveryResult | None = None,
    *,
    before: Callable[[Routed], object] | None = None,
) -> DeliveryResult:
    """Post each record alone with `post` (it returns the target's reference): accepted
    with what the target confirmed of it (`confirmed`, filled by `post`), or settled by
    its error. `before` runs ahead of each (a connector binds the correlation id)."""
    result = result if result is not None else DeliveryResult()
    for routed in records:
        trace: list[Exchange] = []
        if before is not None:
            before(routed)
        try:
            ref = await post(routed, trace)
        except (ConnectorError, httpx.HTTPError) as exc:
            settle(result, routed, trace, exc)
        else:
            result.accepted.append(
                Outcome(
                    routed.id,
                    status=200,
                    ref=ref,
                    exchanges=trace,
                    confirmed=confirmed.pop(routed.id, None),
                )
            )
    return result


class DryRunTransport(httpx.AsyncBaseTransport):
    """Answers every request with the connector's plausible reply; nothing leaves."""

    def __init__(self, responder: DryRunResponder):
        self._responder = responder
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        response = self._responder(request)
        response.request = request
        return response
