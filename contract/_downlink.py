"""The way down: what central sends a store, and how the store says it has it.

Central keeps a durable queue per store with its own gap-free `seq` (separate from the
store's uplink seqs) and publishes what the store has not acknowledged on
`{prefix}/{store}/down`, one topic for every kind of message: an online order to hand
over or ship, and the cancellation of one (reference data adds kinds of its own). The
agent commits each message to its own SQLite before it answers on
`{prefix}/{store}/downack` with the seqs it now holds; central sends again whatever is
not answered. A message is idempotent by `seq` at the store and by `key` at central,
so a resend never makes a second order.

What the POS later does with an order (handed over, partly handed over, shipped,
cancelled) travels up as a `fulfillment` record (`_records.Fulfillment`).
"""

from __future__ import annotations

import gzip
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ._envelope import SCHEMA_VERSION, EnvelopeError, StoreId
from ._limits import LimitError, Limits, inflate, loads
from ._money import Amount, Quantity, Rate
from ._reference import CustomerPurge, RefCustomer, RefItem, ResyncDone

__all__ = [
    "DOWN_KINDS",
    "DownAck",
    "DownBatch",
    "DownBody",
    "DownMessage",
    "OnlineOrder",
    "OrderAddress",
    "OrderCancel",
    "OrderLine",
    "OrderPayment",
    "decode_down",
    "decode_down_ack",
    "down_body_adapter",
    "encode_down",
    "order_key",
]

_ID = Annotated[str, Field(min_length=1, max_length=128)]
_CURRENCY = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]

OrderSource = Literal["commercetools", "adobe_commerce"]
Fulfilment = Literal["pickup", "ship_from_store"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class OrderLine(_Model):
    """One line of an online order as the POS should ring it up."""

    line_id: _ID = Field(description="The platform's line id; fulfilment names it back.")
    sku: _ID = Field(description="The store's POS item id (mapped back from the commerce SKU).")
    description: str = Field(default="", max_length=500)
    quantity: Quantity = Field(gt=0)
    unit: str | None = Field(default=None, max_length=16, description="kg, lb, … when weighed.")
    unit_price: Amount
    discount: Amount = Field(default=Decimal(0), description="Total discount on the line.")
    tax: Amount = Field(default=Decimal(0), description="Tax on the line as the platform says.")
    tax_rate: Rate | None = Field(default=None, description="Percent.")
    amount: Amount = Field(description="What the line costs after discount, tax as `taxed`.")


class OrderPayment(_Model):
    """A payment the customer made online; the POS settles the order against it."""

    method: str = Field(max_length=64, description="The platform's payment method or PSP.")
    amount: Amount
    reference: str = Field(default="", max_length=128, description="The platform's payment id.")
    captured: bool = Field(description="True when the money is taken, not only authorised.")


class OrderAddress(_Model):
    """Where a ship-from-store order goes. Contact data: never logged."""

    name: str = Field(max_length=200)
    lines: list[Annotated[str, Field(max_length=200)]] = Field(max_length=4)
    postal_code: str = Field(default="", max_length=32)
    city: str = Field(max_length=100)
    region: str = Field(default="", max_length=100)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    phone: str | None = Field(default=None, max_length=40)


class OnlineOrder(_Model):
    """An order placed online that the store hands over (pickup) or ships."""

    kind: Literal["order"] = "order"
    source: OrderSource
    target: str = Field(
        min_length=1, max_length=64, description="The relay's target (connector) it came from."
    )
    order_id: _ID = Field(description="The platform's order id.")
    order_number: _ID = Field(description="What the customer and the POS call the order.")
    version: int = Field(ge=0, description="The platform's version of the order when read.")
    store: StoreId
    fulfilment: Fulfilment
    created_at: AwareDatetime
    promised_by: AwareDatetime | None = Field(
        default=None, description="When the customer was told it would be ready."
    )
    currency: _CURRENCY
    taxed: Literal["included", "excluded"] = Field(
        description="Whether line amounts include their tax."
    )
    lines: list[OrderLine] = Field(min_length=1, max_length=500)
    shipping: Amount = Decimal(0)
    tax_total: Amount
    total: Amount = Field(description="What the customer pays in all, tax included.")
    payments: list[OrderPayment] = Field(default_factory=list, max_length=20)
    customer_name: str | None = Field(
        default=None, max_length=200, description="For the counter. Contact data: never logged."
    )
    customer_ref: str | None = Field(default=None, max_length=128)
    ship_to: OrderAddress | None = None


class OrderCancel(_Model):
    """The platform cancelled an order the store holds: take it off the pickup shelf."""

    kind: Literal["order_cancel"] = "order_cancel"
    source: OrderSource
    target: str = Field(min_length=1, max_length=64)
    order_id: _ID
    order_number: _ID
    version: int = Field(ge=0)
    store: StoreId
    reason: str = Field(default="", max_length=500)


AnyDown = OnlineOrder | OrderCancel | RefCustomer | CustomerPurge | RefItem | ResyncDone
DownBody = Annotated[AnyDown, Field(discriminator="kind")]
down_body_adapter: TypeAdapter[AnyDown] = TypeAdapter(DownBody)
DOWN_KINDS = ("order", "order_cancel", "customer", "customer_purge", "item", "resync_done")


def order_key(body: OnlineOrder | OrderCancel) -> str:
    """The key central queues a message under: one per order and kind and version, so
    reading the same order twice queues it once and a changed order queues again."""
    return f"{body.kind}:{body.target}:{body.order_id}:{body.version}"


class DownMessage(_Model):
    """One message in a store's downlink queue."""

    seq: int = Field(ge=1, le=2**63 - 1, description="Per store, gap-free, central's downlink seq.")
    kind: Literal["order", "order_cancel", "customer", "customer_purge", "item", "resync_done"]
    key: str = Field(min_length=1, max_length=512)
    issued_at: AwareDatetime = Field(description="When central queued it.")
    body: dict[str, Any] = Field(description="The message as JSON (`down_body_adapter`).")

    def read(self) -> AnyDown:
        """The body as its model (raises pydantic's ValidationError)."""
        return down_body_adapter.validate_python(self.body)


class DownBatch(_Model):
    """Central → agent on `{prefix}/{store}/down`: messages in seq order."""

    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    store: StoreId
    batch_id: str = Field(min_length=1, max_length=128)
    sent_at: AwareDatetime
    messages: list[DownMessage] = Field(max_length=1000)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DownAck(_Model):
    """Agent → central on `{prefix}/{store}/downack`: seqs now committed at the store
    (new or already held). `through` is the highest seq below which the store holds
    every message, so central can also settle anything an earlier answer lost."""

    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    store: StoreId
    batch_id: str = Field(min_length=1, max_length=128)
    committed: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list, max_length=1000)
    through: int = Field(default=0, ge=0)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def encode_down(message: DownBatch | DownAck) -> bytes:
    """A downlink batch or answer as the broker carries it: gzip-compressed JSON."""
    return gzip.compress(message.model_dump_json(by_alias=True).encode(), mtime=0)


def _read(payload: bytes, limits: Limits | None, what: str) -> Any:
    try:
        return loads(inflate(payload, limits or Limits()), limits or Limits())
    except LimitError as exc:
        raise EnvelopeError(f"{what}: {exc}") from None


def decode_down(payload: bytes, limits: Limits | None = None) -> DownBatch:
    """Inverse of `encode_down` for a batch; EnvelopeError when it is not one."""
    try:
        return DownBatch.model_validate(_read(payload, limits, "downlink batch"))
    except ValidationError as exc:
        raise EnvelopeError(f"downlink batch is invalid: {_first(exc)}") from None


def decode_down_ack(payload: bytes, limits: Limits | None = None) -> DownAck:
    """Inverse of `encode_down` for an answer; EnvelopeError when it is not one."""
    try:
        return DownAck.model_validate(_read(payload, limits, "downlink answer"))
    except ValidationError as exc:
        raise EnvelopeError(f"downlink answer is invalid: {_first(exc)}") from None


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])
