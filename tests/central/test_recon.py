"""Reconciliation over a real inbox (SQLite and PostgreSQL): the POS's end-of-day totals
beside what the relay received and what each target confirmed."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from central.connectors import DeliveryResult, Outcome
from central.inbox import Inbox, OrderDay
from central.recon import reconcile_day, to_csv
from contract import EndOfDay, EndOfDayTotals, Transaction, day_totals, make_key

from .connectors import samples
from .test_delivery import Servers, config, make, put, target


def closing(sales: list[Transaction], *, revision: int = 1, **change: object) -> EndOfDay:
    tables = day_totals(sales)["EUR"]
    body = {
        "kind": "end_of_day",
        "key": make_key("end_of_day", samples.STORE, None, samples.DAY, f"summary-r{revision}"),
        "store": samples.STORE,
        "business_date": samples.DAY,
        "occurred_at": samples.WHEN,
        "source": {"file": "", "position": "end_of_day"},
        "currency": "EUR",
        "by_kind": tables["kind"],
        "by_tender": tables["tender"],
        "by_tax": tables["tax"],
        "revision": revision,
        **change,
    }
    return EndOfDay.model_validate(body)


async def test_a_matching_day_shows_no_difference(inbox: Inbox) -> None:
    sales = [samples.sale("1"), samples.sale("2")]
    await put(inbox, *sales)
    await put(inbox, closing(sales))  # type: ignore[arg-type]
    delivery = make(inbox, config(target()), Servers())
    await delivery.drain()
    await delivery.aclose()
    (day,) = await reconcile_day(inbox, samples.STORE, samples.DAY, {"sandbox": ["sale"]})
    assert day.differences == 0
    assert day.revision == 1
    sale_line = next(line for line in day.lines if (line.group, line.name) == ("kind", "sale"))
    assert sale_line.received == EndOfDayTotals(count=2, amount=Decimal("59.94"))
    assert sale_line.pos == sale_line.received
    assert sale_line.targets["sandbox"] == sale_line.received
    cash = next(line for line in day.lines if (line.group, line.name) == ("tender", "cash"))
    assert cash.received.amount == Decimal("19.94"), "net of change"


async def test_a_missing_sale_and_an_unposted_one_are_highlighted(inbox: Inbox) -> None:
    sales = [samples.sale("1"), samples.sale("2"), samples.sale("3")]
    await put(inbox, *sales[:2])  # the third never reached the relay
    await put(inbox, closing(sales, revision=1), closing(sales, revision=2))  # type: ignore[arg-type]
    (day,) = await reconcile_day(
        inbox, samples.STORE, samples.DAY, {"sandbox": ["sale"]}, tolerance=Decimal("0.05")
    )
    assert day.revision == 2, "the latest revision is compared"
    sale_line = next(line for line in day.lines if (line.group, line.name) == ("kind", "sale"))
    assert sale_line.differs
    assert (sale_line.pos.count, sale_line.received.count) == (3, 2)  # type: ignore[union-attr]
    assert sale_line.targets["sandbox"] == EndOfDayTotals(), "nothing posted yet"
    text = to_csv([day])
    assert text.splitlines()[0].endswith("sandbox_count,sandbox_amount,differs")
    assert "kind,sale,3,89.91,2,59.94,0,0,yes" in text


async def test_the_days_a_store_closed_are_listed(inbox: Inbox) -> None:
    sales = [samples.sale("1")]
    await put(inbox, *sales, closing(sales))  # type: ignore[arg-type]
    assert await inbox.closed_days() == [(samples.STORE, samples.DAY)]


async def test_search_and_throughput_read_the_same_on_both_backends(inbox: Inbox) -> None:
    sale = samples.sale("4711")
    await put(inbox, sale)
    (found,) = await inbox.search_records("4711")
    assert (found["key"], found["transaction_id"], found["total"]) == (sale.key, "4711", "29.97")
    assert await inbox.search_records(f"corr-{sale.key}") == [found]
    assert await inbox.search_records("nothing-like-it") == []
    assert sum(await inbox.throughput(5)) == 1
    record = await inbox.record(found["id"])
    assert record is not None
    assert record["body"]["transaction_id"] == "4711"


async def test_the_newest_summary_wins_even_when_a_rebuilt_agent_numbers_from_one(
    inbox: Inbox,
) -> None:
    from datetime import timedelta

    sales = [samples.sale("1"), samples.sale("2")]
    await put(inbox, *sales)
    stale = closing(sales[:1], revision=2)
    rebuilt = closing(sales, revision=1).model_copy(
        update={"occurred_at": samples.WHEN + timedelta(hours=1), "key": stale.key + "-rebuilt"}
    )
    await put(inbox, stale, rebuilt)  # type: ignore[arg-type]
    (day,) = await reconcile_day(inbox, samples.STORE, samples.DAY, {})
    assert (day.revision, day.differences) == (1, 0)


async def test_the_summary_covering_the_most_wins_whatever_the_store_clock_said(
    inbox: Inbox,
) -> None:
    from datetime import timedelta

    sales = [samples.sale("1"), samples.sale("2")]
    await put(inbox, *sales)
    # Made while the store's clock ran a day ahead: stamped later, counting less.
    early = closing(sales[:1], revision=2).model_copy(
        update={"occurred_at": samples.WHEN + timedelta(days=1), "covered_seq": 1}
    )
    later = closing(sales, revision=3).model_copy(
        update={"key": early.key + "-r3", "covered_seq": 2}
    )
    await put(inbox, later, early)  # type: ignore[arg-type]
    (day,) = await reconcile_day(inbox, samples.STORE, samples.DAY, {})
    assert (day.revision, day.differences) == (3, 0)


class _Stating:
    """A target that answers each sale with its own total: the POS's, or `off` away."""

    name = "stating"
    required_route: tuple[str, ...] = ()

    def __init__(self, off: dict[str, Decimal]) -> None:
        self.off = off

    async def deliver(self, records: Any) -> DeliveryResult:
        result = DeliveryResult()
        for r in records:
            stated = r.record.total + self.off.get(r.record.transaction_id, Decimal(0))
            result.accepted.append(Outcome(r.id, status=201, ref=r.key, confirmed=stated))
        return result

    async def aclose(self) -> None:
        return None


async def _stated_day(inbox: Inbox, off: dict[str, Decimal]) -> Any:
    sales = [samples.sale("1"), samples.sale("2")]
    await put(inbox, *sales, closing(sales))  # type: ignore[arg-type]
    delivery = make(inbox, config(target()), Servers())
    delivery.workers[0].connector = _Stating(off)
    await delivery.drain()
    await delivery.aclose()
    (day,) = await reconcile_day(inbox, samples.STORE, samples.DAY, {"sandbox": ["sale"]})
    return day


async def test_what_a_target_stated_is_compared_and_matches_to_the_cent(inbox: Inbox) -> None:
    day = await _stated_day(inbox, {})
    assert day.differences == 0
    sale_line = next(line for line in day.lines if (line.group, line.name) == ("kind", "sale"))
    assert sale_line.targets["sandbox"] == EndOfDayTotals(count=2, amount=Decimal("59.94"))


async def test_a_target_that_totals_a_sale_differently_is_highlighted(inbox: Inbox) -> None:
    day = await _stated_day(inbox, {"2": Decimal("-0.03")})
    sale_line = next(line for line in day.lines if (line.group, line.name) == ("kind", "sale"))
    assert sale_line.differs
    assert sale_line.received.amount == Decimal("59.94")
    assert sale_line.targets["sandbox"] == EndOfDayTotals(count=2, amount=Decimal("59.91"))


async def test_a_refused_transaction_counts_until_the_store_reads_it_again(inbox: Inbox) -> None:
    from .test_delivery import _refused_of

    sales = [samples.sale("1"), samples.sale("2")]
    unreadable = samples.sale("3")
    await put(inbox, *sales, _refused_of(unreadable))  # type: ignore[arg-type]
    await put(inbox, closing(sales, refused=1))  # type: ignore[arg-type]
    delivery = make(inbox, config(target()), Servers())
    await delivery.drain()
    (day,) = await reconcile_day(inbox, samples.STORE, samples.DAY, {"sandbox": ["sale"]})
    line = next(line for line in day.lines if (line.group, line.name) == ("kind", "refused"))
    assert (line.pos, line.received) == (EndOfDayTotals(count=1), EndOfDayTotals(count=1))
    assert line.targets == {"sandbox": None}, "no target takes a refused record"
    assert line.differs, "money no target has seen"
    assert day.refused_open == 1
    assert day.differences == 1
    assert "kind,refused,1,0,1,0,,,yes" in to_csv([day])

    await put(inbox, unreadable)  # read again after a fix, under its own key
    await delivery.drain()
    await delivery.aclose()
    (day,) = await reconcile_day(inbox, samples.STORE, samples.DAY, {"sandbox": ["sale"]})
    line = next(line for line in day.lines if (line.group, line.name) == ("kind", "refused"))
    assert not line.differs
    assert day.refused_open == 0


async def test_refused_transactions_the_relay_never_received_are_a_difference(
    inbox: Inbox,
) -> None:
    sales = [samples.sale("1")]
    await put(inbox, *sales, closing(sales, refused=2))  # type: ignore[arg-type]
    (day,) = await reconcile_day(inbox, samples.STORE, samples.DAY, {"sandbox": ["sale"]})
    line = next(line for line in day.lines if (line.group, line.name) == ("kind", "refused"))
    assert (line.pos.count, line.received.count) == (2, 0)  # type: ignore[union-attr]
    assert line.differs


async def test_a_sale_posted_off_balance_is_flagged(inbox: Inbox) -> None:
    from .test_delivery import _off_balance

    sales = [samples.sale("1"), _off_balance("2")]
    await put(inbox, *sales)
    delivery = make(inbox, config(target(imbalance="post")), Servers())
    await delivery.drain()
    await delivery.aclose()
    (day,) = await reconcile_day(inbox, samples.STORE, samples.DAY, {"sandbox": ["sale"]})
    line = next(line for line in day.lines if (line.group, line.name) == ("kind", "off balance"))
    assert line.received == EndOfDayTotals(count=1, amount=Decimal("0.50"))
    assert line.targets == {"sandbox": EndOfDayTotals(count=1, amount=Decimal("0.50"))}
    assert line.differs
    assert day.off_balance == 1


async def test_a_days_online_orders_end_the_csv_and_leave_its_columns_as_they_were(
    inbox: Inbox,
) -> None:
    sales = [samples.sale("1"), samples.sale("2")]
    await put(inbox, *sales)
    await put(inbox, closing(sales))  # type: ignore[arg-type]
    (day,) = await reconcile_day(inbox, samples.STORE, samples.DAY, {"sandbox": ["sale"]})
    orders = OrderDay(
        store=samples.STORE,
        day=samples.DAY,
        received=4,
        handed=3,
        fulfilled={"picked_up": 1, "shipped": 1},
        cancelled_online=1,
    )
    plain = to_csv([day])
    assert to_csv([day], OrderDay(store=samples.STORE, day=samples.DAY)) == plain  # none
    text = to_csv([day], orders)
    assert text.startswith(plain), "the existing rows and columns stay as they were"
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert all(len(row) == len(header) for row in rows)
    added = [dict(zip(header, row, strict=True)) for row in rows[len(plain.splitlines()) :]]
    assert [(r["group"], r["name"], r["received_count"]) for r in added] == [
        ("orders", "received", "4"),
        ("orders", "handed_to_store", "3"),
        ("orders", "fulfilled", "2"),
        ("orders", "picked_up", "1"),
        ("orders", "partially_picked_up", "0"),
        ("orders", "shipped", "1"),
        ("orders", "cancelled", "0"),
        ("orders", "cancelled_online", "1"),
    ]
    for row in added:
        assert (row["store"], row["business_date"], row["currency"]) == ("0042", "2026-11-20", "")
        assert row["pos_count"] == row["received_amount"] == row["sandbox_count"] == ""
        assert row["differs"] == "no"
