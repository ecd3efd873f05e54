"""POS simulators that write the export files a real till leaves behind: NRF POSLog
(Xstore-style), MICROS Simphony guest checks, Magestore web-POS orders and inventory
counts — sales with split tenders, returns linked to earlier sales, post-voids,
training transactions — each file written to `.tmp` and renamed when complete.

What a run must deliver is read back from the files with the agent's own parsers
(`expected_keys`), so a proof never trusts the simulator's idea of its output.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

__all__ = [
    "MagestorePos",
    "MicrosPos",
    "PickupCounter",
    "PoslogPos",
    "Sale",
    "expected_totals",
    "write_atomic",
]

CENT = Decimal("0.01")
ITEMS = [
    ("4006381333931", "Ballpoint pen blue", Decimal("2.49")),
    ("4006381333948", "Ballpoint pen red", Decimal("2.49")),
    ("5012345678900", "Notebook A5", Decimal("6.90")),
    ("7613036212345", "Coffee beans 500 g", Decimal("11.99")),
    ("4012345123456", "Desk lamp", Decimal("39.00")),
    ("4098765432109", "USB-C cable", Decimal("12.50")),
]


def write_atomic(folder: Path, name: str, data: bytes) -> Path:
    """Write `name` in `folder` the way a careful POS does: to `.tmp`, then rename."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{name}.tmp"
    tmp.write_bytes(data)
    final = folder / name
    tmp.replace(final)
    return final


@dataclass
class Line:
    sku: str
    description: str
    quantity: int
    price: Decimal

    @property
    def amount(self) -> Decimal:
        return (self.price * self.quantity).quantize(CENT)


@dataclass
class Sale:
    register: str
    number: int
    business_date: date
    at: datetime
    lines: list[Line]
    tenders: list[tuple[str, Decimal]]
    training: bool = False
    returns: Sale | None = None
    """For a return: the sale it refunds (its first line)."""
    voided: bool = False

    @property
    def total(self) -> Decimal:
        sign = -1 if self.returns is not None else 1
        return sign * sum((line.amount for line in self.lines), Decimal(0))


@dataclass
class _Till:
    store: str
    rng: random.Random
    business_date: date
    registers: int = 2
    numbers: dict[str, int] = field(default_factory=dict)
    sold: list[Sale] = field(default_factory=list)
    once: list[Line] = field(default_factory=list)
    """Lines the next sale carries besides its own (an item the catalogue lacks)."""

    def next_number(self, register: str) -> int:
        self.numbers[register] = self.numbers.get(register, 1000) + 1
        return self.numbers[register]

    def transaction(self, now: datetime) -> Sale:
        """A sale (often split tender), now and then a return, a post-void or training."""
        register = str(self.rng.randint(1, self.registers))
        roll = self.rng.random()
        if 0.95 < roll <= 0.97 and self.sold:
            # A post-void: the sale was exported earlier; now it comes again, voided.
            original = self.sold.pop(self.rng.randrange(len(self.sold)))
            return Sale(
                original.register,
                original.number,
                original.business_date,
                now,
                original.lines,
                original.tenders,
                voided=True,
            )
        number = self.next_number(register)
        if roll < 0.1 and self.sold:
            original = self.rng.choice(self.sold)
            line = original.lines[0]
            back = Line(line.sku, line.description, 1, line.price)
            return Sale(
                register,
                number,
                self.business_date,
                now,
                [back],
                [("cash", back.amount)],
                returns=original,
            )
        lines = [
            Line(sku, name, self.rng.randint(1, 3), price)
            for sku, name, price in self.rng.sample(ITEMS, self.rng.randint(1, 3))
        ]
        lines += self.once
        self.once = []
        total = sum((line.amount for line in lines), Decimal(0))
        if total > 10 and self.rng.random() < 0.4:
            cash = Decimal(self.rng.randint(1, int(total) - 1))
            tenders = [("cash", cash), ("card", total - cash)]
        else:
            tenders = [(self.rng.choice(["cash", "card"]), total)]
        sale = Sale(register, number, self.business_date, now, lines, tenders)
        sale.training = roll > 0.97
        if not sale.training:
            self.sold.append(sale)
        return sale


class _Pos:
    """A till writing export files into `folder`; `last` holds the latest file's bytes."""

    def __init__(self, store: str, folder: Path, *, seed: int, day: date | None) -> None:
        self.store = store
        self.folder = folder
        self.till = _Till(store, random.Random(seed), day or date.today())
        self.files = 0
        self.last = b""

    def sell_once(self, sku: str, description: str, price: Decimal) -> None:
        """The next sale also sells this item (one the commerce catalogue may not have)."""
        self.till.once.append(Line(sku, description, 1, price))

    def _save(self, name: str, data: bytes) -> Path:
        self.files += 1
        self.last = data
        return write_atomic(self.folder, name.format(n=self.files), data)


_NS = "http://www.nrf-arts.org/IXRetail/namespace/"


class PoslogPos(_Pos):
    """An Xstore-like till: one POSLog file per call to `write`."""

    suffix = ".xml"
    format = "poslog"

    def __init__(self, store: str, folder: Path, *, seed: int = 1, day: date | None = None):
        super().__init__(store, folder, seed=seed, day=day)

    def write(self, count: int, *, now: datetime | None = None) -> Path:
        moment = now or datetime.now(UTC)
        sales = [self.till.transaction(moment + timedelta(seconds=i)) for i in range(count)]
        body = "".join(self._transaction(s) for s in sales)
        xml = f'<?xml version="1.0" encoding="UTF-8"?>\n<POSLog xmlns="{_NS}">\n{body}</POSLog>\n'
        return self._save(f"POSLog_{self.store}_{moment:%Y%m%d%H%M%S}_{{n:05d}}.xml", xml.encode())

    def hand_over(
        self,
        order_number: str,
        lines: Sequence[tuple[str, Decimal, Decimal]],
        *,
        keep: int,
        now: datetime | None = None,
    ) -> Path:
        """One file with one transaction: the first `keep` of an online order's lines
        (POS item, quantity, unit price) handed over, the rest cancelled."""
        moment = now or datetime.now(UTC)
        register = "1"
        number = self.till.next_number(register)
        items = []
        for n, (sku, quantity, price) in enumerate(lines, start=1):
            status = "PickedUp" if n <= keep else "Cancelled"
            items.append(
                f"<LineItem><SequenceNumber>{n}</SequenceNumber><CustomerOrderForPickup "
                f'ItemType="Stock" OrderStatus="{status}"><AccountNumber>{order_number}'
                f"</AccountNumber><ItemID>{sku}</ItemID>"
                f"<ActualSalesUnitPrice>{price}</ActualSalesUnitPrice>"
                f"<ExtendedAmount>{(price * quantity).quantize(CENT)}</ExtendedAmount>"
                f"<Quantity>{quantity}</Quantity></CustomerOrderForPickup></LineItem>"
            )
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<POSLog xmlns="{_NS}">\n'
            f"  <Transaction><RetailStoreID>{self.store}</RetailStoreID>"
            f"<WorkstationID>{register}</WorkstationID><SequenceNumber>{number}</SequenceNumber>"
            f"<BusinessDayDate>{self.till.business_date.isoformat()}</BusinessDayDate>"
            f"<EndDateTime>{moment.isoformat(timespec='seconds')}</EndDateTime>"
            "<OperatorID>207</OperatorID><CurrencyCode>EUR</CurrencyCode>"
            f'<RetailTransaction TransactionStatus="Totaled">{"".join(items)}'
            "</RetailTransaction></Transaction>\n</POSLog>\n"
        )
        return self._save(f"POSLog_{self.store}_{moment:%Y%m%d%H%M%S}_{{n:05d}}.xml", xml.encode())

    def _transaction(self, s: Sale) -> str:
        status = "PostVoided" if s.voided else "Totaled"
        items = []
        for n, line in enumerate(s.lines, start=1):
            what = "Return" if s.returns is not None else "Sale"
            link = ""
            if s.returns is not None:
                o = s.returns
                link = (
                    '<TransactionLink ReasonCode="Return">'
                    f"<RetailStoreID>{self.store}</RetailStoreID>"
                    f"<WorkstationID>{o.register}</WorkstationID>"
                    f"<SequenceNumber>{o.number}</SequenceNumber>"
                    f"<BusinessDayDate>{o.business_date.isoformat()}</BusinessDayDate>"
                    "<LineItemSequenceNumber>1</LineItemSequenceNumber></TransactionLink>"
                )
            tax = (line.amount * Decimal(19) / Decimal(119)).quantize(CENT)
            items.append(
                f'<LineItem><SequenceNumber>{n}</SequenceNumber><{what} ItemType="Stock">'
                f"<ItemID>{line.sku}</ItemID><Description>{line.description}</Description>"
                f"<ActualSalesUnitPrice>{line.price}</ActualSalesUnitPrice>"
                f"<ExtendedAmount>{line.amount}</ExtendedAmount><Quantity>{line.quantity}</Quantity>"
                '<Tax TaxType="VAT"><TaxGroupID>A</TaxGroupID>'
                '<TaxableAmount TaxIncludedInTaxableAmountFlag="true">'
                f"{line.amount}</TaxableAmount>"
                f"<Amount>{tax}</Amount><Percent>19.00</Percent></Tax>{link}</{what}></LineItem>"
            )
        for n, (kind, amount) in enumerate(s.tenders, start=len(s.lines) + 1):
            code = "Refund" if s.returns is not None else "Sale"
            tender_type = "Cash" if kind == "cash" else "CreditDebit"
            card = (
                '<CreditDebit CardType="Visa"><PrimaryAccountNumber>************4242'
                "</PrimaryAccountNumber></CreditDebit>"
                if kind == "card"
                else ""
            )
            items.append(
                f"<LineItem><SequenceNumber>{n}</SequenceNumber>"
                f'<Tender TenderType="{tender_type}" TypeCode="{code}"><Amount>{amount}</Amount>'
                f"{card}</Tender></LineItem>"
            )
        training = "true" if s.training else "false"
        return (
            f'  <Transaction TrainingModeFlag="{training}">'
            f"<RetailStoreID>{self.store}</RetailStoreID><WorkstationID>{s.register}</WorkstationID>"
            f"<SequenceNumber>{s.number}</SequenceNumber>"
            f"<BusinessDayDate>{s.business_date.isoformat()}</BusinessDayDate>"
            f"<EndDateTime>{s.at.isoformat(timespec='seconds')}</EndDateTime>"
            "<OperatorID>207</OperatorID><CurrencyCode>EUR</CurrencyCode>"
            f'<RetailTransaction TransactionStatus="{status}">{"".join(items)}'
            f'<Total TotalType="TransactionGrandAmount">{s.total}</Total>'
            "</RetailTransaction></Transaction>\n"
        )


class PickupCounter:
    """The store's pickup counter: it takes the online orders the agent wrote into the
    POS import folder (JSON, as the `file` writer writes them), hands each over to its
    customer — all of it, or with some lines cancelled — and the till records that in
    its POSLog export the way Oracle Xstore does: `CustomerOrderForPickup` lines with
    an `OrderStatus` and the order in `AccountNumber`. An imported file is moved to
    `imported/` as a POS import does, so each order is handed over once."""

    def __init__(self, pos: PoslogPos, imports: Path) -> None:
        self.pos = pos
        self.imports = imports
        self.handed: dict[str, dict[str, Decimal]] = {}
        """order number → POS item → quantity handed over."""
        self.cancelled: dict[str, dict[str, Decimal]] = {}
        self.slips: dict[str, bytes] = {}
        """order number → the POSLog the till wrote for its hand-over (the agent archives
        the file itself once it has read it)."""

    def waiting(self) -> list[Path]:
        if not self.imports.is_dir():
            return []
        return sorted(p for p in self.imports.iterdir() if p.is_file() and p.suffix == ".json")

    def serve(self, *, partial: Callable[[str], bool] = lambda _: False) -> list[str]:
        """Hand over every order waiting; `partial(order_number)` says which customers
        take only the first line and cancel the rest. Returns the order numbers."""
        served = []
        for path in self.waiting():
            order = json.loads(path.read_text(encoding="utf-8"))
            order = order.get("order", order)
            if order.get("kind", "order") != "order":
                path.replace(self._done(path))
                continue
            number = str(order["order_number"])
            lines = [
                (str(line["sku"]), Decimal(str(line["quantity"])), Decimal(str(line["unit_price"])))
                for line in order["lines"]
            ]
            cut = partial(number) and len(lines) > 1
            slip = self.pos.hand_over(number, lines, keep=1 if cut else len(lines))
            self.slips[number] = slip.read_bytes()
            self.handed[number] = {sku: q for sku, q, _ in (lines[:1] if cut else lines)}
            self.cancelled[number] = {sku: q for sku, q, _ in lines[1:]} if cut else {}
            path.replace(self._done(path))
            served.append(number)
        return served

    def _done(self, path: Path) -> Path:
        done = self.imports / "imported"
        done.mkdir(exist_ok=True)
        return done / path.name


class MicrosPos(_Pos):
    """A Simphony restaurant: guest checks as the Reporting & Analytics API returns them."""

    suffix = ".json"
    format = "micros"
    TENDERS: ClassVar[dict[str, int]] = {"cash": 101, "card": 201}

    def __init__(self, store: str, folder: Path, *, seed: int = 2, day: date | None = None):
        super().__init__(store, folder, seed=seed, day=day)

    def write(self, count: int, *, now: datetime | None = None) -> Path:
        moment = now or datetime.now(UTC)
        checks = []
        for i in range(count):
            s = self.till.transaction(moment + timedelta(seconds=i))
            if s.returns is not None or s.voided:
                continue  # a restaurant refunds by a reopened check; kept simple here
            checks.append(self._check(s))
        doc = {
            "curUTC": moment.strftime("%Y-%m-%dT%H:%M:%S"),
            "locRef": self.store,
            "guestChecks": checks,
        }
        name = f"guestChecks_{self.store}_{moment:%Y%m%d%H%M%S}_{{n:05d}}.json"
        return self._save(name, json.dumps(doc, indent=1).encode())

    def _check(self, s: Sale) -> dict[str, object]:
        utc = s.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        lines: list[dict[str, object]] = []
        for line in s.lines:
            lines.append(
                {
                    "lineNum": len(lines) + 1,
                    "dspTtl": float(line.amount),
                    "dspQty": line.quantity,
                    "vdFlag": False,
                    "errCorFlag": False,
                    "rtnFlag": False,
                    "menuItem": {"miNum": int(line.sku[-6:]), "inclTax": 0, "activeTaxes": "1"},
                }
            )
        for kind, amount in s.tenders:
            lines.append(
                {
                    "lineNum": len(lines) + 1,
                    "dspTtl": float(amount),
                    "dspQty": 1,
                    "vdFlag": False,
                    "errCorFlag": False,
                    "rtnFlag": False,
                    "tenderMedia": {"tmedNum": self.TENDERS[kind]},
                }
            )
        return {
            "guestCheckId": s.number * 10 + int(s.register),
            "chkNum": s.number,
            "opnBusDt": s.business_date.isoformat(),
            "opnUTC": utc,
            "clsdBusDt": s.business_date.isoformat(),
            "clsdUTC": utc,
            "clsdFlag": True,
            "chkTtl": float(s.total),
            "rvcNum": int(s.register),
            "empNum": 115,
            "trainingFlag": s.training,
            "detailLines": lines,
        }


class MagestorePos(_Pos):
    """A Magestore web POS: orders with split payments, as its API exports them."""

    suffix = ".json"
    format = "magestore"
    METHODS: ClassVar[dict[str, str]] = {"cash": "cashforpos", "card": "ccforpos"}

    def __init__(self, store: str, folder: Path, *, seed: int = 3, day: date | None = None):
        super().__init__(store, folder, seed=seed, day=day)

    def write(self, count: int, *, now: datetime | None = None) -> Path:
        moment = now or datetime.now(UTC)
        orders = []
        for i in range(count):
            s = self.till.transaction(moment + timedelta(seconds=i))
            if s.returns is not None or s.voided or s.training:
                continue
            orders.append(self._order(s))
        name = f"orders_{self.store}_{moment:%Y%m%d%H%M%S}_{{n:05d}}.json"
        return self._save(name, json.dumps(orders, indent=1).encode())

    def _order(self, s: Sale) -> dict[str, object]:
        items = []
        for n, line in enumerate(s.lines, start=1):
            net = (line.amount / Decimal("1.19")).quantize(CENT)
            items.append(
                {
                    "item_id": n,
                    "sku": line.sku,
                    "name": line.description,
                    "qty_ordered": float(line.quantity),
                    "price": float((line.price / Decimal("1.19")).quantize(CENT)),
                    "price_incl_tax": float(line.price),
                    "row_total": float(net),
                    "tax_amount": float(line.amount - net),
                    "tax_percent": 19.0,
                    "discount_amount": 0,
                    "parent_item_id": None,
                    "product_type": "simple",
                }
            )
        return {
            "entity_id": s.number,
            "increment_id": f"POS{s.register}{s.number:06d}",
            "created_at": s.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "state": "complete",
            "status": "complete",
            "order_currency_code": "EUR",
            "grand_total": float(s.total),
            "items": items,
            "pos_id": s.register,
            "pos_location_id": "1",
            "pos_staff_id": "7",
            "shift_id": f"S-{s.business_date:%m%d}-{s.register}",
            "payments": [
                {
                    "method": self.METHODS[kind],
                    "title": self.METHODS[kind],
                    "amount_paid": float(amount),
                    "base_amount_paid": float(amount),
                    "reference_number": "",
                    "card_type": "VI" if kind == "card" else "",
                }
                for kind, amount in s.tenders
            ],
        }


def expected_totals(name: str, data: bytes, format_name: str, store: str) -> dict[str, Decimal]:
    """Key → total of each record the agent must forward from one file, by its own parsers."""
    from agent.parsers import ParseContext, parse_bytes
    from contract import Transaction

    context = ParseContext(file_name=name, store=store)
    return {
        item.key: item.total
        for item in parse_bytes(data, format_name, context=context)
        if isinstance(item, Transaction)
    }
