"""Routing and delivery over a real inbox (SQLite and PostgreSQL) to a recording target:
the retry schedule, the breaker, the exception queue, the audit trail, dry runs."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.config import CentralConfig
from central.connectors import DeliveryResult, Outcome, TargetSettings
from central.connectors.http import HttpSettings
from central.delivery import Breaker, Delivery, retry_delay
from central.inbox import Inbox, IncomingRecord, RecordState, link_key, utcnow
from central.routing import RoutingSettings, StoreRoute
from contract import Inventory, Transaction

from .connectors import samples, test_adobe_commerce
from .connectors.fake_adobe_commerce import FakeAdobeCommerce
from .connectors.recording import RecordingServer

TOKEN = "static-token-123"


def target(name: str = "sandbox", **extra: Any) -> HttpSettings:
    values: dict[str, Any] = {
        "kinds": ["sale", "return", "void", "inventory"],
        "retry_min_seconds": 1,
        **extra,
    }
    return HttpSettings(name=name, url=f"http://{name}.test", token=TOKEN, **values)


def config(
    *targets: TargetSettings, stores: dict[str, StoreRoute] | None = None, **routing: Any
) -> CentralConfig:
    return CentralConfig(
        relay_id="relay-test",
        targets=list(targets),
        stores=stores if stores is not None else {"0042": StoreRoute(currency="EUR")},
        routing=RoutingSettings(**routing),
    )


class Servers:
    def __init__(self) -> None:
        self.by_host: dict[str, RecordingServer] = {}

    def __call__(self, settings: TargetSettings) -> httpx.AsyncBaseTransport:
        server = self.by_host.setdefault(settings.name, RecordingServer())
        return httpx.MockTransport(server.handler)

    def __getitem__(self, name: str) -> RecordingServer:
        return self.by_host.setdefault(name, RecordingServer())


_seq = iter(range(1, 10_000))


async def put(
    inbox: Inbox, *records: Transaction | Inventory, seqs: list[int] | None = None
) -> None:
    numbers = seqs or [next(_seq) for _ in records]
    rows = [
        IncomingRecord(
            seq=seq,
            key=r.key,
            kind=r.kind,
            correlation_id=f"corr-{r.key}",
            occurred_at=r.occurred_at,
            body=r.model_dump(mode="json"),
            link_key=link_key(r),
        )
        for r, seq in zip(records, numbers, strict=True)
    ]
    await inbox.insert_batch(samples.STORE, rows)


async def state_of(inbox: Inbox, key: str) -> RecordState:
    record = await inbox.record_by_key(key)
    assert record is not None
    return record.state


def make(inbox: Inbox, cfg: CentralConfig, servers: Servers) -> Delivery:
    return Delivery(cfg, inbox, transport_for=servers, rng=random.Random(7))


async def test_a_sale_is_posted_once_with_its_audit_trail(inbox: Inbox) -> None:
    servers = Servers()
    delivery = make(inbox, config(target()), servers)
    sale = samples.sale(customer=True)
    await put(inbox, sale)
    await delivery.drain()
    await delivery.aclose()
    assert await state_of(inbox, sale.key) is RecordState.POSTED
    assert servers["sandbox"].puts == 1
    record = await inbox.record_by_key(sale.key)
    assert record is not None
    trail = await inbox.audit_trail(record.id)
    steps = [e.step for e in trail]
    assert steps[:2] == ["received", "routed"]
    assert steps[-3:] == ["attempt", "posted", "posted"]  # the target's, then the record's
    routed = next(e for e in trail if e.step == "routed" and e.detail)
    snapshot = json.dumps(routed.detail)
    assert "jana.example@example.org" not in snapshot, "the snapshot is redacted"
    assert '"total": "29.97"' in snapshot
    attempt = next(e for e in trail if e.step == "attempt")
    assert attempt.target == "sandbox"
    assert attempt.status == 200
    assert attempt.detail["exchanges"][0]["method"] == "PUT"
    (delivered,) = await inbox.deliveries_of(record.id)
    assert (delivered["state"], delivered["ref"]) == ("posted", sale.key)


async def test_a_refused_pos_transaction_goes_to_a_person_with_its_reason(inbox: Inbox) -> None:
    from contract import Refused

    servers = Servers()
    refused = Refused.model_validate(
        {
            "kind": "refused",
            "key": "refused:0042:1:2024-05-01:T77",
            "store": samples.STORE,
            "business_date": "2024-05-01",
            "occurred_at": "2024-05-01T12:00:00+02:00",
            "source": {"file": "day.xml", "position": "/POSLog/Transaction[7]"},
            "format": "poslog",
            "register": "1",
            "transaction_id": "T77",
            "place": "/POSLog/Transaction[7]/RetailTransaction/Total",
            "reason": "amount '12,3,4' is not a number",
            "fragment": "<Transaction>…</Transaction>",
        }
    )
    await put(inbox, refused)  # type: ignore[arg-type]
    delivery = make(inbox, config(target()), servers)
    await delivery.drain()
    await delivery.aclose()
    assert await state_of(inbox, refused.key) is RecordState.EXCEPTION
    (item,) = await inbox.exceptions()
    assert item.reason == (
        "the store could not read this POS transaction (poslog, "
        "/POSLog/Transaction[7]/RetailTransaction/Total, transaction T77): "
        "amount '12,3,4' is not a number"
    )
    assert servers["sandbox"].calls == 0  # nothing half-read reaches a target


def _refused_of(sale: Transaction) -> Any:
    """The `refused` record the store sent for `sale` before a fix let it read it."""
    from contract import Refused, make_key

    return Refused.model_validate(
        {
            "kind": "refused",
            "key": make_key(
                "refused", sale.store, sale.register, sale.business_date, sale.transaction_id
            ),
            "store": sale.store,
            "business_date": sale.business_date,
            "occurred_at": sale.occurred_at,
            "source": {"file": "day.xml", "position": "/POSLog/Transaction[3]"},
            "format": "poslog",
            "register": sale.register,
            "transaction_id": sale.transaction_id,
            "place": "/POSLog/Transaction[3]/RetailTransaction",
            "reason": "a line without ExtendedAmount or a unit price",
            "fragment": "<Transaction>…</Transaction>",
        }
    )


@pytest.mark.parametrize("readable_first", [False, True], ids=["refused-first", "readable-first"])
async def test_a_refused_transaction_read_again_closes_its_exception(
    inbox: Inbox, readable_first: bool
) -> None:
    servers = Servers()
    sale = samples.sale("2201")
    refused = _refused_of(sale)
    first, second = (sale, refused) if readable_first else (refused, sale)
    delivery = make(inbox, config(target()), servers)
    await put(inbox, first)  # type: ignore[arg-type]
    await delivery.drain()
    if not readable_first:
        assert await state_of(inbox, refused.key) is RecordState.EXCEPTION
        assert len(await inbox.exceptions()) == 1
    await put(inbox, second)  # type: ignore[arg-type]
    await delivery.drain()
    await delivery.aclose()
    assert await state_of(inbox, sale.key) is RecordState.POSTED
    assert await state_of(inbox, refused.key) is RecordState.RESOLVED
    assert await inbox.exceptions() == []
    (closed,) = await inbox.exceptions(include_closed=True)
    assert closed.resolution == f"read again by the store as {sale.key}"
    assert closed.resolved_by == "tillbridge"
    record = await inbox.record_by_key(refused.key)
    assert record is not None
    steps = [entry.step for entry in await inbox.audit_trail(record.id)]
    assert "fixed" in steps
    assert servers["sandbox"].puts == 1  # the sale posts once; the refused record never


async def test_a_refused_transaction_stays_open_while_another_is_read(inbox: Inbox) -> None:
    servers = Servers()
    refused = _refused_of(samples.sale("2202"))
    delivery = make(inbox, config(target()), servers)
    await put(inbox, refused, samples.sale("2203"))  # type: ignore[arg-type]
    await delivery.drain()
    await delivery.aclose()
    assert await state_of(inbox, refused.key) is RecordState.EXCEPTION
    (item,) = await inbox.exceptions()
    assert item.key == refused.key


def _off_balance(number: str, **attributes: str) -> Transaction:
    """A sale whose lines miss its POS total by 0.50 (the POS's own figures)."""
    sale = samples.sale(number)
    return sale.model_copy(
        update={"imbalance": Decimal("0.50"), "attributes": {**sale.attributes, **attributes}}
    )


async def test_a_sale_off_balance_is_held_or_posted_by_each_targets_policy(inbox: Inbox) -> None:
    servers = Servers()
    sale = _off_balance("2301", tender_imbalance="0.50")
    delivery = make(inbox, config(target("held"), target("posted", imbalance="post")), servers)
    await put(inbox, sale)
    await delivery.drain()
    await delivery.aclose()
    assert servers["posted"].puts == 1
    assert servers["held"].calls == 0, "held before any call"
    (item,) = await inbox.exceptions()
    assert item.target == "held"
    assert item.reason.startswith(
        "held: the POS transaction does not balance (lines off by 0.50, tenders off by 0.50); "
        'held holds such records (imbalance = "hold")'
    )
    record = await inbox.record_by_key(sale.key)
    assert record is not None
    states = {d["target"]: d["state"] for d in await inbox.deliveries_of(record.id)}
    assert states == {"held": "exception", "posted": "posted"}


async def test_hold_is_the_default_and_a_balanced_sale_is_never_held(inbox: Inbox) -> None:
    assert target().imbalance == "hold"
    servers = Servers()
    delivery = make(inbox, config(target()), servers)
    await put(inbox, samples.sale("2302"), _off_balance("2303"))
    await delivery.drain()
    await delivery.aclose()
    assert servers["sandbox"].puts == 1
    (item,) = await inbox.exceptions()
    assert item.key == _off_balance("2303").key
    assert "lines off by 0.50" in item.reason


async def test_an_unknown_store_waits_in_the_exception_queue_until_routed(inbox: Inbox) -> None:
    servers = Servers()
    sale = samples.sale()
    await put(inbox, sale)
    first = make(inbox, config(target(), stores={}), servers)
    await first.drain()
    await first.aclose()
    assert await state_of(inbox, sale.key) is RecordState.EXCEPTION
    (item,) = await inbox.exceptions()
    assert item.reason == 'store 0042 has no routing: add [central.stores."0042"]'
    assert item.target is None
    assert servers["sandbox"].calls == 0
    # The mapping is fixed; an operator retries.
    said = await inbox.retry_exception(item.id, by="operator")
    assert "routing again" in said
    fixed = make(inbox, config(target()), servers)
    await fixed.drain()
    await fixed.aclose()
    assert await state_of(inbox, sale.key) is RecordState.POSTED
    assert await inbox.exceptions() == []
    closed = await inbox.exception(item.id)
    assert closed is not None
    assert closed.resolution == "retried"


async def test_a_sku_added_to_the_table_routes_its_record_on_retry_without_a_restart(
    inbox: Inbox, tmp_path: Path
) -> None:
    """The operator's way with an unmapped SKU: add it to the SKU table, retry the
    exception. The relay reads the table again when the file changed; a table that no
    longer reads keeps the one in use."""
    table = tmp_path / "skus.csv"
    table.write_text("pos_sku,sku\n4006381333948,PEN-RED\n", encoding="utf-8")
    strict = target("strict", maps_required=True)
    routing = {
        "sku_mode": "table",
        "sku_table": table,
        "payments": {"strict": {"card": "psp", "cash": "cash"}},
        "tax_codes": {"strict": {"A": "std"}},
    }
    servers = Servers()
    delivery = make(inbox, config(strict, **routing), servers)
    sale = samples.sale()
    await put(inbox, sale)
    await delivery.drain()
    (item,) = await inbox.exceptions()
    assert "SKU 4006381333931 (line 1) has no mapping" in item.reason
    # A broken edit first: the table in use stays, the record waits as it was.
    table.write_text("pos_sku\n", encoding="utf-8")
    await inbox.retry_exception(item.id, by="operator")
    await delivery.drain()
    (again,) = await inbox.exceptions()
    assert "has no mapping" in again.reason
    # The fix: the missing SKU added. Retried, it routes and posts, same relay.
    table.write_text(
        "pos_sku,sku\n4006381333948,PEN-RED\n4006381333931,PEN-BLUE\n", encoding="utf-8"
    )
    await inbox.retry_exception(again.id, by="operator")
    await delivery.drain()
    await delivery.aclose()
    assert await state_of(inbox, sale.key) is RecordState.POSTED
    assert await inbox.exceptions() == []
    assert servers["strict"].puts == 1


@pytest.mark.parametrize(
    ("routing", "reason"),
    [
        (
            {"payments": {"strict": {"card": "psp"}}},
            "strict: tender type cash has no payment method in central.routing.payments for strict",
        ),
        (
            {"sku_mode": "table"},
            "strict: SKU 4006381333931 (line 1) has no mapping in the SKU table",
        ),
        (
            {
                "payments": {"strict": {"card": "psp", "cash": "cash"}},
                "tax_codes": {"strict": {"B": "x"}},
            },
            "strict: tax code A has no mapping for strict",
        ),
    ],
)
async def test_nothing_is_guessed(inbox: Inbox, routing: dict[str, Any], reason: str) -> None:
    strict = target("strict", maps_required=True)
    delivery = make(inbox, config(strict, **routing), Servers())
    await put(inbox, samples.sale())
    await delivery.drain()
    await delivery.aclose()
    (item,) = await inbox.exceptions()
    assert item.reason == reason


async def test_a_store_without_its_target_keys_is_refused_by_name(inbox: Inbox) -> None:
    needs = target("needs", route_fields=["channel"])
    delivery = make(inbox, config(needs), Servers())
    await put(inbox, samples.sale())
    await delivery.drain()
    await delivery.aclose()
    (item,) = await inbox.exceptions()
    assert item.reason == "needs: store 0042 has no http.channel in [central.stores]"


async def test_retry_after_is_honoured(inbox: Inbox) -> None:
    servers = Servers()
    delivery = make(inbox, config(target()), servers)
    sale = samples.sale()
    await put(inbox, sale)
    servers["sandbox"].fail_next_write(429, headers={"Retry-After": "30"}, message="slow")
    now = utcnow()
    await delivery.run_once(now=now)
    assert await state_of(inbox, sale.key) is RecordState.RETRYING
    record = await inbox.record_by_key(sale.key)
    assert record is not None
    (d,) = await inbox.deliveries_of(record.id)
    wait = (utcnow().fromisoformat(d["next_attempt_at"]) - now).total_seconds()
    assert 30 <= wait < 32
    assert await delivery.run_once(now=now + timedelta(seconds=20)) == 0
    await delivery.run_once(now=now + timedelta(seconds=31))
    await delivery.aclose()
    assert await state_of(inbox, sale.key) is RecordState.POSTED
    assert servers["sandbox"].puts == 1


async def test_the_retry_cap_ends_in_an_exception_that_a_retry_clears(inbox: Inbox) -> None:
    servers = Servers()
    delivery = make(inbox, config(target(max_attempts=3, breaker_failures=100)), servers)
    sale = samples.sale()
    await put(inbox, sale)
    servers["sandbox"].down = True
    now = utcnow()
    for step in range(6):
        await delivery.run_once(now=now + timedelta(hours=step))
    assert servers["sandbox"].calls == 3, "one call per attempt: the look-up failed too"
    (item,) = await inbox.exceptions()
    assert item.target == "sandbox"
    assert item.status == 503
    assert item.attempts == 3
    assert item.reason.startswith("gave up after 3 attempts: GET /records/")
    assert item.response["exchanges"][0]["status"] == 503
    assert await state_of(inbox, sale.key) is RecordState.EXCEPTION
    servers["sandbox"].down = False
    await inbox.retry_exception(item.id, by="operator")
    await delivery.drain()
    await delivery.aclose()
    assert await state_of(inbox, sale.key) is RecordState.POSTED
    assert servers["sandbox"].puts == 1


async def test_a_rejection_goes_straight_to_a_person_who_may_resolve_it(inbox: Inbox) -> None:
    servers = Servers()
    delivery = make(inbox, config(target()), servers)
    sale = samples.sale()
    await put(inbox, sale)
    servers["sandbox"].fail_next_write(400, message="price list missing")
    await delivery.drain()
    await delivery.aclose()
    (item,) = await inbox.exceptions()
    assert "price list missing" in item.reason
    assert item.attempts == 1
    with pytest.raises(ValueError, match="needs a note"):
        await inbox.resolve_exception(item.id, " ", by="operator")
    await inbox.resolve_exception(item.id, "Entered by hand in the back office.", by="operator")
    assert await state_of(inbox, sale.key) is RecordState.RESOLVED
    assert await inbox.exceptions() == []
    with pytest.raises(ValueError, match="already closed"):
        await inbox.retry_exception(item.id, by="operator")


async def test_an_open_breaker_stops_calls_until_its_trial_succeeds(inbox: Inbox) -> None:
    servers = Servers()
    sandbox = target(breaker_failures=2, breaker_reset_seconds=3600, batch_size=1, concurrency=1)
    delivery = make(inbox, config(sandbox), servers)
    await put(inbox, *(samples.sale(str(n)) for n in range(1, 5)))
    servers["sandbox"].down = True
    now = utcnow()
    await delivery.run_once(now=now)
    await delivery.run_once(now=now + timedelta(seconds=10))
    (worker,) = delivery.workers
    assert worker.breaker.state == "open"
    calls = servers["sandbox"].calls
    assert await worker.run_once(now=now + timedelta(minutes=5)) == 0
    assert servers["sandbox"].calls == calls
    await delivery.aclose()


def test_the_breaker_half_opens_for_one_trial() -> None:
    clock = [0.0]
    breaker = Breaker(2, 30, clock=lambda: clock[0])
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert not breaker.allow()
    clock[0] = 31
    assert breaker.state == "half-open"
    assert breaker.allow()
    assert not breaker.allow(), "one trial at a time"
    breaker.failure()
    assert breaker.state == "open"
    clock[0] = 62
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"


def test_backoff_grows_to_its_cap_with_jitter_and_respects_retry_after() -> None:
    settings = target(retry_min_seconds=2, retry_max_seconds=60)
    rng = random.Random(1)
    delays = [retry_delay(n, settings, None, rng) for n in range(1, 10)]
    assert 1 <= delays[0] <= 2
    assert all(30 <= d <= 60 for d in delays[6:])
    assert retry_delay(1, settings, 120, rng) == 120


async def test_a_return_waits_for_its_sale_and_names_it(inbox: Inbox) -> None:
    servers = Servers()
    delivery = make(inbox, config(target()), servers)
    sale = samples.sale("7001")
    back = samples.refund(sale, "7002")
    await put(inbox, back)
    await delivery.drain()
    assert await state_of(inbox, back.key) is RecordState.PARKED
    await put(inbox, sale)
    await delivery.drain()
    await delivery.aclose()
    assert await state_of(inbox, back.key) is RecordState.POSTED
    assert servers["sandbox"].records[back.key]["original_ref"] == sale.key


async def test_an_older_inventory_level_never_overwrites_a_newer_one(inbox: Inbox) -> None:
    servers = Servers()
    delivery = make(inbox, config(target()), servers)
    newer = samples.inventory(quantity=12, reference="count-2")
    older = samples.inventory(quantity=17, reference="count-1")
    await put(inbox, newer, seqs=[20_001])
    await delivery.drain()
    await put(inbox, older, seqs=[20_000])  # resent after a gap: the store counted it first
    await delivery.drain()
    await delivery.aclose()
    assert list(servers["sandbox"].records) == [newer.key]
    record = await inbox.record_by_key(older.key)
    assert record is not None
    assert record.state is RecordState.POSTED
    (d,) = await inbox.deliveries_of(record.id)
    assert d["state"] == "superseded"


async def test_updates_of_one_level_are_handed_out_one_at_a_time(inbox: Inbox) -> None:
    await put(
        inbox,
        samples.inventory(quantity=1, reference="a"),
        samples.inventory(quantity=2, reference="b"),
        samples.inventory(sku="4006381333948", quantity=3, reference="a"),
    )
    delivery = make(inbox, config(target()), Servers())
    await delivery.route_once()
    lease = timedelta(minutes=1)
    first = await inbox.claim_deliveries("sandbox", 10, "relay-a", lease)
    assert sorted(i.body["quantity"] for i in first) == ["1", "3"]
    assert await inbox.claim_deliveries("sandbox", 10, "relay-b", lease) == []
    await delivery.aclose()


async def test_a_dry_run_records_the_request_and_sends_nothing(inbox: Inbox) -> None:
    servers = Servers()
    delivery = make(inbox, config(target(dry_run=True)), servers)
    sale = samples.sale()
    await put(inbox, sale)
    await delivery.drain()
    await delivery.aclose()
    assert servers["sandbox"].calls == 0
    record = await inbox.record_by_key(sale.key)
    assert record is not None
    trail = await inbox.audit_trail(record.id)
    attempt = next(e for e in trail if e.step == "attempt")
    assert attempt.detail["dry_run"] is True
    (exchange,) = attempt.detail["exchanges"]
    assert exchange["method"] == "PUT"
    assert exchange["url"].startswith("http://sandbox.test/records/")
    sent = json.loads(exchange["request"])
    assert sent["record"]["key"] == sale.key


async def test_one_target_failing_holds_only_its_own_delivery(inbox: Inbox) -> None:
    servers = Servers()
    delivery = make(inbox, config(target("crm"), target("shop")), servers)
    sale = samples.sale()
    await put(inbox, sale)
    servers["crm"].fail_next_write(422, message="account locked")
    await delivery.drain()
    assert await state_of(inbox, sale.key) is RecordState.EXCEPTION
    (item,) = await inbox.exceptions()
    assert item.target == "crm"
    await inbox.retry_exception(item.id, by="operator")
    await delivery.drain()
    await delivery.aclose()
    assert await state_of(inbox, sale.key) is RecordState.POSTED
    assert (servers["crm"].puts, servers["shop"].puts) == (1, 1)


async def test_kinds_no_target_takes_are_done_without_a_call(inbox: Inbox) -> None:
    servers = Servers()
    delivery = make(inbox, config(target(kinds=["inventory"])), servers)
    sale = samples.sale()
    await put(inbox, sale)
    await delivery.drain()
    await delivery.aclose()
    assert await state_of(inbox, sale.key) is RecordState.POSTED
    assert servers["sandbox"].calls == 0
    stats = await inbox.stats()
    assert stats["deliveries"] == {}


async def test_a_claim_cut_off_midway_is_sent_again_as_a_possible_repeat(inbox: Inbox) -> None:
    delivery = make(inbox, config(target()), Servers())
    sale = samples.sale()
    await put(inbox, sale)
    await delivery.route_once()
    now = utcnow()
    (lost,) = await inbox.claim_deliveries(
        "sandbox", 5, "relay-dead", timedelta(seconds=30), now=now
    )
    assert lost.attempts == 0
    assert (
        await inbox.claim_deliveries("sandbox", 5, "relay-b", timedelta(seconds=30), now=now) == []
    )
    later = now + timedelta(seconds=31)
    (again,) = await inbox.claim_deliveries(
        "sandbox", 5, "relay-b", timedelta(seconds=30), now=later
    )
    assert again.attempts == 1, "the connector must look before it creates"
    await delivery.aclose()


async def test_the_audit_of_finished_records_is_purged_after_its_retention(inbox: Inbox) -> None:
    servers = Servers()
    delivery = make(inbox, config(target()), servers)
    done, stuck = samples.sale("1"), samples.sale("2")
    await put(inbox, done)
    await delivery.drain()
    servers["sandbox"].fail_next_write(400, message="refused")
    await put(inbox, stuck)
    await delivery.drain()
    await delivery.aclose()
    kept = timedelta(days=90)
    assert await inbox.purge_audit(kept) == 0, "nothing is old yet"
    purged = await inbox.purge_audit(kept, now=utcnow() + timedelta(days=91))
    assert purged > 0
    finished = await inbox.record_by_key(done.key)
    waiting = await inbox.record_by_key(stuck.key)
    assert finished is not None
    assert waiting is not None
    assert [e.step for e in await inbox.audit_trail(finished.id)] == [
        "received",
        "routed",
        "posted",
    ], "the record's own state history stays; the detailed steps are gone"
    assert "attempt" in [e.step for e in await inbox.audit_trail(waiting.id)]


async def test_a_targets_error_text_is_redacted_before_anyone_sees_it(inbox: Inbox) -> None:
    from central.connectors import DeliveryResult, Outcome
    from central.delivery import TargetWorker

    class Quoting:
        """A target whose error text quotes the customer it was sent."""

        name = "quoting"
        required_route: tuple[str, ...] = ()

        async def deliver(self, records: list[Any]) -> DeliveryResult:
            reason = "duplicate value found: Email jana.example@example.org, Phone +49 30 1234567"
            return DeliveryResult(
                rejected=[Outcome(r.id, reason=reason, status=400) for r in records]
            )

        async def aclose(self) -> None:
            return None

    delivery = make(inbox, config(target()), Servers())
    await put(inbox, samples.sale(customer=True))
    await delivery.route_once()
    await delivery.aclose()
    worker = TargetWorker(
        target(), Quoting(), inbox, relay_id="relay-test", lease=timedelta(minutes=1)
    )
    assert await worker.run_once() == 1
    (item,) = await inbox.exceptions()
    assert item.reason.startswith("duplicate value found: Email ")
    assert "jana.example@example.org" not in item.reason
    assert "1234567" not in item.reason


class _Limited:
    """A target at its usage limit for `holds` calls: it asks to be left alone for an hour."""

    name = "limited"
    required_route: tuple[str, ...] = ()

    def __init__(self, holds: int) -> None:
        self.holds = holds
        self.calls = 0

    async def deliver(self, records: Any) -> DeliveryResult:
        self.calls += 1
        result = DeliveryResult()
        for r in records:
            if self.calls <= self.holds:
                result.retry.append(
                    Outcome(r.id, reason="daily limit reached", retry_after=3600, hold=True)
                )
            else:
                result.accepted.append(Outcome(r.id, status=200, ref="ok"))
        return result

    async def aclose(self) -> None:
        return None


async def test_a_limit_hold_waits_without_using_attempts_or_opening_the_breaker(
    inbox: Inbox,
) -> None:
    delivery = make(inbox, config(target(max_attempts=1, breaker_failures=1)), Servers())
    limited = _Limited(holds=3)
    delivery.workers[0].connector = limited
    sale = samples.sale()
    await put(inbox, sale)
    now = utcnow()
    for hour in range(3):
        await delivery.run_once(now=now + timedelta(hours=hour, seconds=1))
        assert delivery.workers[0].breaker.state == "closed"
    assert limited.calls == 3
    assert await inbox.exceptions() == [], "a hold is not a failed attempt"
    record = await inbox.record_by_key(sale.key)
    assert record is not None
    (d,) = await inbox.deliveries_of(record.id)
    assert d["attempts"] == 0
    wait = (utcnow().fromisoformat(d["next_attempt_at"]) - utcnow()).total_seconds()
    assert 3500 < wait <= 3600, "held for as long as the target asked"
    await delivery.run_once(now=now + timedelta(hours=3, seconds=2))
    await delivery.aclose()
    assert await state_of(inbox, sale.key) is RecordState.POSTED


async def test_movements_are_never_superseded_by_movements_only_by_a_newer_level(
    inbox: Inbox,
) -> None:
    servers = Servers()
    delivery = make(inbox, config(target()), servers)
    later = samples.movement(5, "move-2")
    earlier = samples.movement(-3, "move-1")
    await put(inbox, later, seqs=[30_002])
    await delivery.drain()
    await put(inbox, earlier, seqs=[30_001])  # resent after a gap: it happened first
    await delivery.drain()
    assert sorted(servers["sandbox"].records) == sorted([later.key, earlier.key])
    count = samples.inventory(quantity=40, reference="count-9")
    stale = samples.movement(7, "move-0")
    await put(inbox, count, seqs=[30_010])
    await delivery.drain()
    await put(inbox, stale, seqs=[30_000])  # before the count: the count holds it already
    await delivery.drain()
    await delivery.aclose()
    assert stale.key not in servers["sandbox"].records
    record = await inbox.record_by_key(stale.key)
    assert record is not None
    (d,) = await inbox.deliveries_of(record.id)
    assert d["state"] == "superseded"


async def test_adobe_commerce_movements_count_once_across_a_relay_that_died_mid_write(
    inbox: Inbox,
) -> None:
    """A movement goes to Adobe Commerce as the level it leads to, built on the level the
    relay last posted for the item (by posting time) or on the quantity noted before the
    first: a relay that dies after Magento applied it sends the same level again."""
    fake = FakeAdobeCommerce()
    fake.known_skus |= {"4006381333931", "4006381333948"}
    fake.source_items[("berlin_mitte", "4006381333948")] = Decimal(5)
    adobe = test_adobe_commerce.settings().model_copy(update={"name": "adobe"})
    route = StoreRoute.model_validate(
        {"currency": "EUR", "adobe_commerce": {"source_code": "berlin_mitte", "store_id": "1"}}
    )
    cfg = config(adobe, stores={samples.STORE: route})
    delivery = Delivery(
        cfg,
        inbox,
        transport_for=lambda _settings: httpx.MockTransport(fake.handler),
        rng=random.Random(7),
    )
    blue, red = ("berlin_mitte", "4006381333931"), ("berlin_mitte", "4006381333948")
    clock = utcnow()

    async def run(seconds: float) -> None:
        nonlocal clock
        clock += timedelta(seconds=seconds)
        await delivery.run_once(now=clock)

    await put(inbox, samples.inventory(quantity=17), seqs=[40_001])
    await run(1)
    assert fake.source_items[blue] == 17
    # The relay claims a movement, Magento applies it, the relay dies before recording.
    out = samples.movement(-3, "move-1")
    await put(inbox, out, seqs=[40_002])
    await delivery.route_once(now=clock)
    (claimed,) = await inbox.claim_deliveries(
        "adobe", 5, "relay-dead", timedelta(seconds=30), now=clock
    )
    assert claimed.level_ref == "berlin_mitte/4006381333931@17"
    assert claimed.attempts == 0
    await delivery.workers[0].connector.deliver([delivery.workers[0]._prepare(claimed).routed])  # type: ignore[list-item]
    assert fake.source_items[blue] == 14
    await run(60)  # the lease ran out: another relay takes it over
    assert fake.source_items[blue] == 14, "the same level again, not 11"
    assert await state_of(inbox, out.key) is RecordState.POSTED
    # A movement of an item the relay never posted a level of: noted first, then written.
    red_in = samples.movement(4, "move-2", sku="4006381333948")
    await put(inbox, red_in, seqs=[40_003])
    await run(1)
    assert fake.source_items[red] == 5, "only read"
    await run(1)
    assert fake.source_items[red] == 9
    record = await inbox.record_by_key(red_in.key)
    assert record is not None
    (d,) = await inbox.deliveries_of(record.id)
    assert (d["state"], d["attempts"], d["ref"]) == ("posted", 1, "berlin_mitte/4006381333948@9")
    # A movement that happened earlier but is posted later builds on the latest posted.
    late, early = samples.movement(2, "move-4"), samples.movement(-1, "move-3")
    await put(inbox, late, seqs=[40_005])
    await run(1)
    await put(inbox, early, seqs=[40_004])
    await run(1)
    assert fake.source_items[blue] == 15
    after = samples.movement(-5, "move-5")
    await put(inbox, after, seqs=[40_006])
    await run(1)
    await delivery.aclose()
    assert fake.source_items[blue] == 10, "17 - 3 + 2 - 1 - 5"


async def test_a_movement_waits_while_the_count_before_it_is_retried(inbox: Inbox) -> None:
    """Had the movement gone first, the count (an earlier seq) would have been superseded
    by it, and the target would hold the old level plus the movement, not the count's."""
    servers = Servers()
    delivery = make(inbox, config(target()), servers)
    count = samples.inventory(quantity=40, reference="count-50")
    moved = samples.movement(-2, "move-51")
    servers["sandbox"].fail_next_write(503, message="busy")
    await put(inbox, count, seqs=[50_001])
    now = utcnow()
    await delivery.run_once(now=now)
    await put(inbox, moved, seqs=[50_002])
    await delivery.run_once(now=now + timedelta(milliseconds=10))
    assert moved.key not in servers["sandbox"].records, "it waits for the count"
    for minutes in range(1, 4):
        await delivery.run_once(now=now + timedelta(minutes=minutes))
    await delivery.aclose()
    assert await state_of(inbox, count.key) is RecordState.POSTED
    assert await state_of(inbox, moved.key) is RecordState.POSTED
    assert list(servers["sandbox"].records)[-2:] == [count.key, moved.key]
