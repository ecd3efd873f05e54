"""Hypothesis strategies for canonical records."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import strategies as st

from contract import (
    Card,
    Customer,
    Discount,
    Inventory,
    SourceRef,
    Tax,
    Tender,
    TenderType,
    Transaction,
    TransactionLine,
    TransactionLink,
    currency_exponent,
    inventory_key,
    make_key,
)

CURRENCIES = ["EUR", "USD", "GBP", "JPY", "KWD", "CHF"]

ids = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-_/: ", min_size=1, max_size=12).filter(
    lambda s: s.strip() != ""
)
texts = st.text(max_size=40)
dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
moments = st.builds(
    lambda d, tz: d.replace(tzinfo=UTC).astimezone(tz).replace(microsecond=0),
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)),
    offsets,
)


def amounts(currency: str, max_units: int = 10**7) -> st.SearchStrategy[Decimal]:
    exp = currency_exponent(currency)
    return st.integers(min_value=-max_units * 10**exp, max_value=max_units * 10**exp).map(
        lambda n: Decimal(n).scaleb(-exp)
    )


def quantities() -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(-1000), max_value=Decimal(1000), places=3, allow_nan=False)


@st.composite
def transactions(draw: st.DrawFn) -> Transaction:
    currency = draw(st.sampled_from(CURRENCIES))
    money = amounts(currency)
    kind = draw(st.sampled_from(["sale", "return", "void", "cancel"]))
    store, register, txn = draw(ids), draw(ids), draw(ids)
    business_date = draw(dates)
    lines = draw(
        st.lists(
            st.builds(
                TransactionLine,
                number=st.integers(1, 999).map(str),
                sku=ids,
                description=texts,
                quantity=quantities(),
                unit_price=st.one_of(st.none(), money),
                amount=money,
                discounts=st.lists(st.builds(Discount, code=ids, amount=money), max_size=2),
                taxes=st.lists(
                    st.builds(
                        Tax,
                        code=ids,
                        rate=st.decimals(0, 30, places=2),
                        taxable=money,
                        amount=money,
                        included=st.booleans(),
                    ),
                    max_size=2,
                ),
                voided=st.booleans(),
            ),
            max_size=5,
        )
    )
    tenders = draw(
        st.lists(
            st.builds(
                Tender,
                type=st.sampled_from(list(TenderType)),
                method=texts,
                amount=money,
                change=st.one_of(st.none(), money),
                card=st.one_of(
                    st.none(),
                    st.builds(
                        Card,
                        brand=st.sampled_from(["visa", "mastercard"]),
                        last4=st.from_regex(r"\A\d{4}\Z"),
                    ),
                ),
                auth_code=st.one_of(st.none(), ids),
            ),
            max_size=3,
        )
    )
    return Transaction(
        kind=kind,
        key=make_key(kind, store, register, business_date, txn),
        store=store,
        register=register,
        operator=draw(st.one_of(st.none(), ids)),
        business_date=business_date,
        occurred_at=draw(moments),
        source=SourceRef(file=draw(ids), position=draw(texts)),
        transaction_id=txn,
        currency=currency,
        total=draw(money),
        lines=lines,
        tenders=tenders,
        links=draw(st.lists(st.builds(TransactionLink, transaction_id=ids), max_size=1)),
        customer=draw(
            st.one_of(st.none(), st.builds(Customer, loyalty_id=st.one_of(st.none(), ids)))
        ),
    )


@st.composite
def inventories(draw: st.DrawFn) -> Inventory:
    store, location, sku, ref = draw(ids), draw(ids), draw(ids), draw(ids)
    return Inventory(
        kind="inventory",
        key=inventory_key(store, location, sku, ref),
        store=store,
        business_date=draw(dates),
        occurred_at=draw(moments),
        source=SourceRef(file="counts.csv"),
        location=location,
        sku=sku,
        quantity=draw(quantities()),
        reference=ref,
    )
