"""The canonical records: what a store's till did, in one model for every POS.

Sales, returns, voids and cancels share one shape (`Transaction`); inventory,
end-of-day and customer records have their own. `Record` is the union,
discriminated by `kind`.
"""

from __future__ import annotations

import warnings
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from ._exact import fix_exponents, imbalance
from ._money import Amount, Quantity, Rate, quantize_amount

__all__ = [
    "Card",
    "Customer",
    "CustomerRecord",
    "Discount",
    "EndOfDay",
    "EndOfDayTotals",
    "FulfilledLine",
    "Fulfillment",
    "Inventory",
    "LineLink",
    "LineType",
    "Record",
    "RecordKind",
    "Refused",
    "SourceRef",
    "Tax",
    "Tender",
    "TenderType",
    "Transaction",
    "TransactionKind",
    "TransactionLine",
    "TransactionLink",
    "record_adapter",
]

# `register` is the POS's word and the contract's field name; it shadows ABCMeta.register on
# the model class, which nothing here uses. Silence only that warning.
warnings.filterwarnings("ignore", message=r'Field name "register"', category=UserWarning)

# Money amounts take the currency's exponent ("12.3" -> "12.30"); unit_price and rates may
# be more precise and are left as the POS gives them.

_ID = Annotated[str, Field(min_length=1, max_length=128)]
_CURRENCY = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class RecordKind(StrEnum):
    SALE = "sale"
    RETURN = "return"
    VOID = "void"
    CANCEL = "cancel"
    INVENTORY = "inventory"
    END_OF_DAY = "end_of_day"
    CUSTOMER = "customer"
    REFUSED = "refused"
    FULFILLMENT = "fulfillment"


TransactionKind = Literal["sale", "return", "void", "cancel"]


class SourceRef(_Model):
    """Where a record came from: the file and the place inside it."""

    file: str = Field(description="File name as the POS wrote it (no folder).")
    position: str = Field(
        default="",
        description="Place inside the file: element path, line number or byte offset.",
    )
    sha256: str = Field(default="", description="Content hash of the whole file.")


class Discount(_Model):
    code: str = Field(default="", description="POS discount or promotion code.")
    description: str = ""
    amount: Amount = Field(description="Discount amount, positive when it lowers the price.")
    reason: str = ""


class Tax(_Model):
    code: str = Field(description="POS tax code or authority/group id.")
    rate: Rate | None = Field(default=None, description="Percent, as the POS states it.")
    taxable: Amount | None = Field(default=None, description="Taxable amount.")
    amount: Amount = Field(description="Tax amount.")
    included: bool = Field(description="True when the tax is included in the line prices.")


class LineLink(_Model):
    """The original transaction and line that a returned line refers to."""

    store: str | None = None
    register: str | None = None
    business_date: date | None = None
    transaction_id: str | None = None
    line: str | None = None
    key: str | None = Field(default=None, description="The original's idempotency key, if known.")


class LineType(StrEnum):
    ITEM = "item"
    SERVICE_CHARGE = "service_charge"
    FEE = "fee"
    ROUNDING = "rounding"
    DEPOSIT = "deposit"


class TransactionLine(_Model):
    number: str = Field(description="Line number as the POS gives it.")
    type: LineType = LineType.ITEM
    sku: str = Field(default="", description="POS item id; mapped to commerce SKUs centrally.")
    description: str = ""
    quantity: Quantity = Decimal(1)
    unit_price: Amount | None = None
    amount: Amount = Field(description="Extended amount, signed as the POS signs it.")
    discounts: list[Discount] = Field(default_factory=list)
    taxes: list[Tax] = Field(default_factory=list)
    voided: bool = Field(default=False, description="Voided on the till; not part of the total.")
    link: LineLink | None = None


class TenderType(StrEnum):
    CASH = "cash"
    CARD = "card"
    GIFT_CARD = "gift_card"
    VOUCHER = "voucher"
    LOYALTY = "loyalty"
    OTHER = "other"


class Card(_Model):
    brand: str = Field(default="other", description="visa, mastercard, amex, … or other.")
    last4: str | None = Field(default=None, pattern=r"^\d{4}$")


class Tender(_Model):
    type: TenderType
    method: str = Field(default="", description="The POS's own tender code or name.")
    amount: Amount = Field(description="Amount tendered, signed (a refund is negative).")
    change: Amount | None = Field(default=None, description="Change given back on this tender.")
    cashback: Amount | None = Field(default=None, description="Cash back given on this tender.")
    card: Card | None = None
    auth_code: str | None = None


class TransactionLink(_Model):
    """The original transaction a return or void refers to."""

    store: str | None = None
    register: str | None = None
    business_date: date | None = None
    transaction_id: str
    key: str | None = Field(default=None, description="The original's idempotency key, if known.")
    reason: str = ""


class Customer(_Model):
    loyalty_id: str | None = None
    pos_customer_id: str | None = None
    email: str | None = Field(default=None, description="Contact: only where the POS gives it.")
    phone: str | None = Field(default=None, description="Contact: only where the POS gives it.")
    first_name: str | None = None
    last_name: str | None = None


class _Base(_Model):
    key: str = Field(min_length=1, max_length=512, description="Idempotency key.")
    store: _ID
    business_date: date
    occurred_at: AwareDatetime = Field(description="ISO-8601 with offset.")
    source: SourceRef


class Transaction(_Base):
    """A sale, return, void (of an earlier transaction) or cancel (abandoned before tender)."""

    kind: TransactionKind
    register: str | None = None
    operator: str | None = None
    transaction_id: _ID
    currency: _CURRENCY
    total: Amount = Field(description="Grand total as the POS states it; a return is negative.")
    lines: list[TransactionLine] = Field(default_factory=list)
    tenders: list[Tender] = Field(default_factory=list)
    taxes: list[Tax] = Field(default_factory=list, description="Transaction-level tax summary.")
    discounts: list[Discount] = Field(
        default_factory=list, description="Transaction-level discounts."
    )
    links: list[TransactionLink] = Field(default_factory=list)
    customer: Customer | None = None
    imbalance: Amount = Field(
        default=Decimal(0),
        description="Total minus (lines + excluded taxes − transaction discounts); 0 when they "
        "reconcile. The POS total is never rewritten.",
    )
    attributes: dict[str, str] = Field(
        default_factory=dict, description="POS-specific facts worth keeping (shift, channel, …)."
    )

    @model_validator(mode="after")
    def _exact_money(self) -> Transaction:
        fix_exponents(self)  # runs for every record of every file: compiled (_exact)
        return self

    @staticmethod
    def compute_imbalance(
        total: Decimal,
        lines: list[TransactionLine],
        taxes: list[Tax],
        discounts: list[Discount],
        currency: str,
    ) -> Decimal:
        """How far the POS total is from what the lines add up to (0 when exact)."""
        return imbalance(total, lines, taxes, discounts, currency)


class Inventory(_Base):
    """An on-hand level or movement for one SKU at one location."""

    kind: Literal["inventory"]
    location: _ID = Field(description="POS location / site id.")
    sku: _ID
    quantity: Quantity = Field(description="Absolute on-hand, or the change when mode=delta.")
    mode: Literal["absolute", "delta"] = "absolute"
    reason: str = Field(default="", description="count, adjust, overlay, transfer, receipt, …")
    reference: str = Field(default="", description="The POS's document id for this level.")


class EndOfDayTotals(_Model):
    count: int = 0
    amount: Amount = Decimal(0)


class EndOfDay(_Base):
    """What the store did in one business day, so central can reconcile."""

    kind: Literal["end_of_day"]
    currency: _CURRENCY
    by_kind: dict[str, EndOfDayTotals] = Field(default_factory=dict)
    by_tender: dict[str, EndOfDayTotals] = Field(default_factory=dict)
    by_tax: dict[str, EndOfDayTotals] = Field(default_factory=dict)
    training: int = Field(default=0, description="Training-mode transactions (not forwarded).")
    control: int = Field(default=0, description="Till control transactions (not forwarded).")
    suspended: int = Field(default=0, description="Suspended transactions (not forwarded).")
    refused: int = Field(
        default=0,
        description="Transactions that could not be read, each sent as a `refused` record "
        "(with its raw fragment) for the exception queue.",
    )
    revision: int = Field(
        default=1, ge=1, description="Raised when records of a closed day arrive late."
    )
    covered_seq: int = Field(
        default=0,
        ge=0,
        description="The highest seq among the day's records this summary counts. A store's "
        "seqs never go backwards (not even across an outbox rebuild), so the summary with "
        "the highest is the newest, whatever the store's clock said when it was made.",
    )

    @model_validator(mode="after")
    def _exact_money(self) -> EndOfDay:
        for table in (self.by_kind, self.by_tender, self.by_tax):
            for name, totals in list(table.items()):
                fixed = quantize_amount(totals.amount, self.currency)
                if str(fixed) != str(totals.amount):
                    table[name] = totals.model_copy(update={"amount": fixed})
        return self


class CustomerRecord(_Base):
    """A customer profile as the POS knows it."""

    kind: Literal["customer"]
    customer: Customer


class Refused(_Base):
    """One POS transaction that could not be read, kept whole so no money goes missing
    silently: the rest of its file is forwarded, this one waits in the exception queue
    until a fix lets it be read again (its key stays the same)."""

    kind: Literal["refused"]
    format: str = Field(description="The parser that refused it: poslog, micros, magestore, ...")
    register: str | None = None
    transaction_id: str | None = Field(
        default=None, description="The POS transaction number, where it could be read."
    )
    place: str = Field(description="Where in the file: element path, line or record number.")
    reason: str = Field(description="Why it could not be read, in words a support engineer reads.")
    fragment: str = Field(
        description="The transaction as the file holds it (card numbers masked, contact "
        "details blanked), cut at 64 KiB."
    )


class FulfilledLine(_Model):
    """What the store did with one line of an online order."""

    line_id: str | None = Field(
        default=None, max_length=128, description="The platform's line id, where the POS has it."
    )
    sku: str = Field(default="", max_length=128, description="The POS item id.")
    handed_over: Quantity = Field(
        default=Decimal(0), ge=0, description="Picked up by, or shipped to, the customer."
    )
    cancelled: Quantity = Field(default=Decimal(0), ge=0, description="Will not be fulfilled.")


class Fulfillment(_Base):
    """The POS handed over, partly handed over, shipped or cancelled an online order the
    store received on the downlink. Central posts it to the platform the order came from;
    lines not named keep their state (a partial pickup leaves the rest open)."""

    kind: Literal["fulfillment"]
    order_number: _ID = Field(description="The online order's number as the POS recorded it.")
    status: Literal["picked_up", "partially_picked_up", "shipped", "cancelled"]
    register: str | None = None
    transaction_id: _ID = Field(description="The POS transaction that recorded it.")
    lines: list[FulfilledLine] = Field(default_factory=list, max_length=500)
    tracking: str | None = Field(default=None, max_length=128, description="Carrier reference.")


AnyRecord = Transaction | Inventory | EndOfDay | CustomerRecord | Refused | Fulfillment

Record = Annotated[AnyRecord, Field(discriminator="kind")]
"""Any canonical record; `kind` says which."""

record_adapter: TypeAdapter[AnyRecord] = TypeAdapter(Record)
