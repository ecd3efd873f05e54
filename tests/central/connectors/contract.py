"""The contract every connector passes, run against each through its own fake API.

A connector's test module subclasses `ConnectorContract` and provides a `case`
fixture: its settings, and a fake of its target written from the documented request
and response shapes (`httpx.MockTransport`), with the faults this suite injects.
Idempotency is proven by counting what the fake stored, never by trusting a
server to refuse duplicates.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

import httpx
import pytest

from central.connectors import (
    CONNECTORS,
    Connector,
    DeliveryResult,
    DryRunTransport,
    Routed,
    TargetSettings,
)
from common.redact import redact_text

from . import samples
from .rules import Probe


class FakeApi(Protocol):
    """An in-memory target system with fault injection."""

    token_requests: int
    secrets: list[str]
    """Client secrets and every token issued: none may appear in an audit excerpt."""

    def handler(self, request: httpx.Request) -> httpx.Response: ...

    def stored(self, routed: Routed) -> int:
        """How many target objects exist for this record (a sale's orders, a refund's refunds)."""
        ...

    def inventory_level(self, routed: Routed) -> Decimal | None: ...

    def payments_of(self, routed: Routed) -> int:
        """How many payments the target holds for this record's order."""
        ...

    def order_total(self, routed: Routed) -> Decimal:
        """The sale's total as the target derives it from the lines it holds."""
        ...

    def fail_next_write(
        self, status: int, *, headers: dict[str, str] | None = None, message: str = ""
    ) -> None:
        """Answer the next write with `status` and an error body carrying `message`."""
        ...

    def drop_answer_to_next_write(self) -> None:
        """Apply the next write, then lose the answer (the client sees a read timeout)."""
        ...

    def expire_token(self) -> None:
        """Make the token in use invalid: the next call with it gets 401."""
        ...

    def change_inventory_behind_our_back(self, routed: Routed) -> None:
        """Bump the entry's version so our next write conflicts (409)."""
        ...


@dataclass
class Case:
    settings: Callable[[bool], TargetSettings]
    """The target's settings; the argument is `dry_run`."""
    fake: Callable[..., FakeApi]
    """The fake's class: called with no argument, every documented rule is enforced;
    with `without={rule}`, all but that one."""
    probes: Mapping[str, Probe] = field(default_factory=dict)
    """One probe per rule of the fake (`rules.py`)."""
    kinds: set[str] = field(default_factory=lambda: {"sale", "return", "void", "inventory"})
    """Kinds the target takes; the dry-run test sends inventory only where listed."""


def run_probes(case: Case, **fake_options: object) -> None:
    """Every probe of the case against a fresh fake built with `fake_options`."""
    rules = set(case.fake().RULES)  # type: ignore[attr-defined]
    assert set(case.probes) == rules, "one probe per documented rule, no more, no less"
    for rule, probe in case.probes.items():
        try:
            probe(case.fake(**fake_options))
        except AssertionError as exc:
            raise AssertionError(f"rule {rule} is not enforced: {exc}") from exc


def verdicts(result: DeliveryResult) -> dict[int, str]:
    seen: dict[int, str] = {}
    for name in ("accepted", "retry", "rejected"):
        for outcome in getattr(result, name):
            assert outcome.id not in seen, f"record {outcome.id} got two verdicts"
            seen[outcome.id] = name
    return seen


def audit_text(result: DeliveryResult) -> str:
    outcomes = result.accepted + result.retry + result.rejected
    return json.dumps(
        [[e.as_dict() for e in o.exchanges] + [o.reason] for o in outcomes], ensure_ascii=False
    )


class Harness:
    def __init__(self, case: Case, fake: FakeApi, connector: Connector, client: httpx.AsyncClient):
        self.case = case
        self.fake = fake
        self.connector = connector
        self.client = client

    async def deliver(self, *records: Routed) -> DeliveryResult:
        result = await self.connector.deliver(list(records))
        got = verdicts(result)
        assert sorted(got) == sorted(r.id for r in records), "every record gets one verdict"
        return result


async def _harness(case: Case) -> AsyncIterator[Harness]:
    fake = case.fake()
    settings = case.settings(False)
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler), timeout=5)
    connector = CONNECTORS[settings.type].factory(settings, client)  # type: ignore[attr-defined]
    try:
        yield Harness(case, fake, connector, client)
    finally:
        await connector.aclose()
        await client.aclose()


def _only(result: DeliveryResult, verdict: str) -> None:
    got = set(verdicts(result).values())
    assert got == {verdict}, f"expected {verdict}, got {result}"


class ConnectorContract:
    """Subclass and provide a `case` fixture.

    A target without OAuth, returns or inventory switches the matching test off in its
    subclass (`test_… = None`) rather than skipping it, so a run never shows a skip.
    """

    @pytest.fixture
    async def h(self, case: Case) -> AsyncIterator[Harness]:
        async for harness in _harness(case):
            yield harness

    async def test_a_sale_is_accepted_with_its_reference_and_exchanges(self, h: Harness) -> None:
        sale = samples.routed(samples.sale())
        result = await h.deliver(sale)
        _only(result, "accepted")
        (outcome,) = result.accepted
        assert outcome.ref, "the target's id for the sale is kept"
        assert outcome.exchanges
        assert all(e.status is not None for e in outcome.exchanges)
        assert h.fake.stored(sale) == 1

    async def test_a_repeat_after_acceptance_stores_nothing_new(self, h: Harness) -> None:
        record = samples.sale()
        first = await h.deliver(samples.routed(record))
        _only(first, "accepted")
        again = samples.routed(record, attempts=1)
        second = await h.deliver(again)
        _only(second, "accepted")
        assert second.accepted[0].ref == first.accepted[0].ref
        assert h.fake.stored(again) == 1

    async def test_an_answer_lost_after_the_server_applied_it_is_not_applied_twice(
        self, h: Harness
    ) -> None:
        record = samples.sale()
        h.fake.drop_answer_to_next_write()
        lost = await h.deliver(samples.routed(record))
        _only(lost, "retry")
        assert "no answer" in lost.retry[0].reason
        again = samples.routed(record, attempts=1)
        result = await h.deliver(again)
        _only(result, "accepted")
        assert h.fake.stored(again) == 1

    async def test_429_is_retried_after_the_servers_retry_after(self, h: Harness) -> None:
        sale = samples.routed(samples.sale())
        h.fake.fail_next_write(429, headers={"Retry-After": "7"}, message="slow down")
        result = await h.deliver(sale)
        _only(result, "retry")
        assert result.retry[0].retry_after == 7
        assert result.retry[0].status == 429
        assert h.fake.stored(sale) == 0

    async def test_a_server_error_is_retried_then_accepted(self, h: Harness) -> None:
        record = samples.sale()
        h.fake.fail_next_write(503, message="maintenance")
        first = await h.deliver(samples.routed(record))
        _only(first, "retry")
        second = await h.deliver(samples.routed(record, attempts=1))
        _only(second, "accepted")
        assert h.fake.stored(samples.routed(record)) == 1

    async def test_a_validation_error_is_rejected_with_the_servers_reason(self, h: Harness) -> None:
        sale = samples.routed(samples.sale())
        h.fake.fail_next_write(400, message="The value 'XX' is not valid for field 'country'")
        result = await h.deliver(sale)
        _only(result, "rejected")
        assert "is not valid for field" in result.rejected[0].reason
        assert result.rejected[0].status == 400

    async def test_one_failing_record_does_not_decide_for_the_others(self, h: Harness) -> None:
        good1 = samples.routed(samples.sale("2001"))
        bad = samples.routed(samples.sale("2002"))
        good2 = samples.routed(samples.sale("2003"))
        await h.deliver(good1)
        h.fake.fail_next_write(400, message="rejected for test")
        result = await h.deliver(bad, good2)
        got = verdicts(result)
        assert got[bad.id] == "rejected"
        assert got[good2.id] == "accepted"
        assert h.fake.stored(good2) == 1

    async def test_an_expired_token_is_refreshed_once(self, h: Harness) -> None:
        await h.deliver(samples.routed(samples.sale("3001")))
        before = h.fake.token_requests
        assert before == 1, "the token is cached between calls"
        h.fake.expire_token()
        result = await h.deliver(samples.routed(samples.sale("3002")))
        _only(result, "accepted")
        assert h.fake.token_requests == before + 1

    async def test_a_return_refers_to_its_sale(self, h: Harness) -> None:
        sale = samples.sale("4001")
        posted = await h.deliver(samples.routed(sale))
        _only(posted, "accepted")
        ref = posted.accepted[0].ref
        back = samples.routed(samples.refund(sale, "4002"), original_ref=ref)
        result = await h.deliver(back)
        _only(result, "accepted")
        assert h.fake.stored(back) == 1
        again = await h.deliver(samples.routed(back.record, attempts=1, original_ref=ref))  # type: ignore[arg-type]
        _only(again, "accepted")
        assert h.fake.stored(back) == 1

    async def test_inventory_is_set_absolutely_and_survives_a_concurrent_change(
        self, h: Harness
    ) -> None:
        first = samples.routed(samples.inventory(quantity=17))
        _only(await h.deliver(first), "accepted")
        assert h.fake.inventory_level(first) == Decimal(17)
        second = samples.routed(samples.inventory(quantity=12, reference="count-2"))
        h.fake.change_inventory_behind_our_back(second)
        _only(await h.deliver(second), "accepted")
        assert h.fake.inventory_level(second) == Decimal(12)

    async def test_a_stock_movement_is_applied_once_despite_a_resend_and_a_concurrent_change(
        self, h: Harness
    ) -> None:
        level = samples.routed(samples.inventory(quantity=17))
        _only(await h.deliver(level), "accepted")
        out = samples.routed(samples.movement(-3, "move-1"))
        h.fake.change_inventory_behind_our_back(out)  # the level is now 22
        _only(await h.deliver(out), "accepted")
        assert h.fake.inventory_level(out) == Decimal(19)
        again = samples.routed(out.record, attempts=1)  # type: ignore[arg-type]
        _only(await h.deliver(again), "accepted")
        assert h.fake.inventory_level(out) == Decimal(19), "a resend changes nothing"
        received = samples.routed(samples.movement(10, "move-2"))
        _only(await h.deliver(received), "accepted")
        assert h.fake.inventory_level(out) == Decimal(29)

    async def test_a_cancelled_basket_is_recorded_once_and_never_paid(self, h: Harness) -> None:
        basket = samples.routed(samples.cancel("4201"))
        _only(await h.deliver(basket), "accepted")
        assert h.fake.stored(basket) == 1
        again = samples.routed(basket.record, attempts=1)  # type: ignore[arg-type]
        _only(await h.deliver(again), "accepted")
        assert h.fake.stored(basket) == 1
        assert h.fake.payments_of(basket) == 0

    def test_the_fake_enforces_each_documented_rule(self, case: Case) -> None:
        run_probes(case)

    async def test_a_weighed_and_discounted_sale_arrives_to_the_cent(self, h: Harness) -> None:
        grocery = samples.routed(samples.grocery())
        result = await h.deliver(grocery)
        _only(result, "accepted")
        assert h.fake.stored(grocery) == 1
        assert h.fake.order_total(grocery) == grocery.record.total  # type: ignore[union-attr]
        again = await h.deliver(samples.routed(grocery.record, attempts=1))  # type: ignore[arg-type]
        _only(again, "accepted")
        assert h.fake.stored(grocery) == 1

    async def test_a_grocery_day_posts_every_order_once_to_the_cent(self, h: Harness) -> None:
        day = [samples.routed(s) for s in samples.grocery_day()]
        first = await h.deliver(*day)
        _only(first, "accepted")
        refs = {o.id: o.ref for o in first.accepted}
        back = samples.routed(
            samples.refund(day[0].record, "R001"),  # type: ignore[arg-type]
            original_ref=refs[day[0].id],
        )
        void = samples.routed(
            samples.void(day[1].record, "V001"),  # type: ignore[arg-type]
            original_ref=refs[day[1].id],
        )
        kinds = [r for r in (back, void) if r.kind in h.case.kinds]
        _only(await h.deliver(*kinds), "accepted")
        again = [samples.routed(r.record, attempts=1) for r in day]  # type: ignore[arg-type]
        _only(await h.deliver(*again), "accepted")
        for sale in day:
            assert h.fake.stored(sale) == 1, sale.key
            assert h.fake.order_total(sale) == sale.record.total, sale.key  # type: ignore[union-attr]
        for done in kinds:
            assert h.fake.stored(done) == 1, done.key

    async def test_a_void_reaches_its_sale_once(self, h: Harness) -> None:
        sale = samples.sale("4101")
        posted = await h.deliver(samples.routed(sale))
        _only(posted, "accepted")
        ref = posted.accepted[0].ref
        void = samples.routed(samples.void(sale, "4102"), original_ref=ref)
        _only(await h.deliver(void), "accepted")
        assert h.fake.stored(void) == 1
        again = samples.routed(void.record, attempts=1, original_ref=ref)  # type: ignore[arg-type]
        _only(await h.deliver(again), "accepted")
        assert h.fake.stored(void) == 1

    async def test_no_secret_token_or_contact_reaches_the_audit(self, h: Harness) -> None:
        result = await h.deliver(samples.routed(samples.sale("5001", customer=True)))
        h.fake.fail_next_write(500, message="boom")
        result.extend(await h.deliver(samples.routed(samples.sale("5002", customer=True))))
        text = audit_text(result)
        for secret in h.fake.secrets:
            assert secret not in text
        for contact in ("jana.example@example.org", "+49 30 1234567"):
            assert contact not in text

    async def test_a_dry_run_sends_nothing_and_keeps_each_request_whole(self, case: Case) -> None:
        settings = case.settings(True)
        registration = CONNECTORS[settings.type]  # type: ignore[attr-defined]
        transport = DryRunTransport(registration.dry_run)
        async with httpx.AsyncClient(transport=transport) as client:
            connector = registration.factory(settings, client)
            records: list[Routed] = [samples.routed(samples.sale("6001"))]
            if "inventory" in case.kinds:
                records.append(samples.routed(samples.inventory()))
            result = await connector.deliver(records)
            await connector.aclose()
        _only(result, "accepted")
        assert transport.requests, "the requests were built"
        writes = [
            e
            for o in result.accepted
            for e in o.exchanges
            if e.method in ("POST", "PUT", "PATCH", "DELETE")
        ]
        assert writes, "the writes a real run would make are in the audit"
        # Whole, with what the audit never holds (contact, secrets) redacted.
        bodies = {redact_text(r.content.decode()) for r in transport.requests}
        for exchange in writes:
            assert exchange.request in bodies, "the whole body is kept"
        assert "…" not in json.dumps([w.request for w in writes])
