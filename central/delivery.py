"""Delivery: route received records, then a worker per target posts them.

The relay owns everything connectors must not do: the retry schedule (exponential
backoff with jitter, `Retry-After` honoured, a cap, then the exception queue), a
circuit breaker per target, bounded concurrency, and one-at-a-time updates of each
inventory level. An inbox record is marked posted only after the target said so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx

from common.redact import redact_text
from common.settings import ConfigError
from contract import Fulfillment, OnlineOrder, Record, Transaction, down_body_adapter

from ._polling import TransportFactory, target_client
from .config import CentralConfig
from .connectors import (
    CONNECTORS,
    Connector,
    DeliveryResult,
    DryRunTransport,
    Outcome,
    Routed,
    TargetSettings,
)
from .inbox import (
    DeliveryItem,
    DeliveryUpdate,
    Downlink,
    Inbox,
    RecordState,
    RouteDecision,
    StoreXref,
    utcnow,
)
from .routing import Router, load_sku_table, stores_with_xref
from .validated import Validated

__all__ = ["Breaker", "Delivery", "TargetWorker", "retry_delay"]

log = logging.getLogger("tillbridge.central.delivery")

RETRY_AFTER_CAP = 24 * 3600.0


def _stamp(path: Path) -> tuple[int, int] | None:
    """What tells a file changed: its modification time and size (None when unreadable)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def retry_delay(
    attempt: int, settings: TargetSettings, retry_after: float | None, rng: random.Random
) -> float:
    """Seconds before attempt `attempt + 1`: capped exponential backoff with full jitter
    in its upper half, never sooner than the target's own `Retry-After`."""
    growth = 2.0 ** max(attempt - 1, 0)
    base = min(settings.retry_max_seconds, settings.retry_min_seconds * growth)
    delay = base * (0.5 + rng.random() / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay


class Breaker:
    """Opens after `failures` consecutive failed calls; after `reset` seconds lets one
    trial call through (half-open); a success closes it, a failure opens it again."""

    def __init__(self, failures: int, reset: float, clock: Callable[[], float] = time.monotonic):
        self._threshold = failures
        self._reset = reset
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self.opened_at >= self._reset else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial:
            self._trial = True
            return True
        return False

    def reopens_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(self._reset - (self._clock() - self.opened_at), 0.0)

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial = False

    def failure(self) -> None:
        self.failures += 1
        self._trial = False
        if self.opened_at is not None or self.failures >= self._threshold:
            self.opened_at = self._clock()


def _target_failure(result: DeliveryResult) -> bool:
    """A call that says nothing about the records, only that the target is unwell."""
    if result.accepted or result.rejected or not result.retry:
        return False
    if any(o.hold for o in result.retry):
        return False  # the target is well and said when to come back
    return all(o.status is None or o.status >= 500 or o.status == 429 for o in result.retry)


def off_balance(record: Record) -> str:
    """How a POS transaction misses its own total, in words ("" when it balances): its
    lines (`imbalance`) and its tenders (the `tender_imbalance` attribute)."""
    if not isinstance(record, Transaction):
        return ""
    said = []
    if record.imbalance:
        said.append(f"lines off by {record.imbalance}")
    tenders = record.attributes.get("tender_imbalance")
    try:
        if tenders is not None and Decimal(tenders) != 0:
            said.append(f"tenders off by {tenders}")
    except InvalidOperation:
        said.append(f"tenders off by {tenders!r}")
    return ", ".join(said)


@dataclass
class _Claimed:
    item: DeliveryItem
    routed: Routed | None
    problem: str = ""


class TargetWorker:
    """Posts one target's due deliveries."""

    def __init__(
        self,
        settings: TargetSettings,
        connector: Connector,
        inbox: Inbox,
        *,
        relay_id: str,
        lease: timedelta,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        validated: Validated | None = None,
    ) -> None:
        self.settings = settings
        self.validated = validated if validated is not None else Validated()
        self.connector = connector
        self.inbox = inbox
        self.relay_id = relay_id
        self.lease = lease
        self.breaker = Breaker(settings.breaker_failures, settings.breaker_reset_seconds, clock)
        self._rng = rng or random.Random()
        self._gate = asyncio.Semaphore(settings.concurrency)
        self.counters = {"posted": 0, "retry": 0, "exception": 0, "superseded": 0, "deferred": 0}

    async def run_once(self, *, now: datetime | None = None) -> int:
        """Claim what is due, deliver it, record the verdicts; returns how many were claimed."""
        if not self.breaker.allow():
            return 0
        half_open = self.breaker.state == "half-open"
        size = 1 if half_open else self.settings.batch_size * self.settings.concurrency
        items = await self.inbox.claim_deliveries(
            self.settings.name, size, self.relay_id, self.lease, now=now
        )
        if not items:
            if half_open:
                self.breaker.success()
            return 0
        claimed = [self._prepare(item) for item in items]
        updates = [self._without_call(c) for c in claimed if c.routed is None or c.item.superseded]
        ready = [c for c in claimed if c.routed is not None and not c.item.superseded]
        batches = [
            ready[i : i + self.settings.batch_size]
            for i in range(0, len(ready), self.settings.batch_size)
        ]
        results = await asyncio.gather(*(self._call(batch) for batch in batches))
        for updates_of_batch in results:
            updates += updates_of_batch
        await self.inbox.finish_deliveries(
            self.settings.name, updates, relay_id=self.relay_id, now=now
        )
        for u in updates:
            self.counters[u.verdict] = self.counters.get(u.verdict, 0) + 1
        return len(items)

    def _prepare(self, item: DeliveryItem) -> _Claimed:
        try:
            record = self.validated.record(item.key, item.body)
        except ValueError as exc:  # pragma: no cover - the inbox holds validated bodies
            return _Claimed(item, None, f"stored record no longer validates: {exc}")
        if self.settings.imbalance == "hold":
            off = off_balance(record)
            if off:
                return _Claimed(
                    item,
                    None,
                    f"held: the POS transaction does not balance ({off}); {self.settings.name} "
                    'holds such records (imbalance = "hold"): retry once the POS data or '
                    "the policy is fixed, or resolve",
                )
        route = item.route
        return _Claimed(
            item,
            Routed(
                id=item.record_id,
                key=item.key,
                correlation_id=item.correlation_id,
                record=record,
                route=route.get("route", {}),
                skus=route.get("skus", {}),
                payments=route.get("payments", {}),
                tax_codes=route.get("tax_codes", {}),
                attempts=item.attempts,
                original_ref=item.original_ref,
                noted=item.ref,
                level_ref=item.level_ref,
            ),
        )

    def _without_call(self, c: _Claimed) -> DeliveryUpdate:
        if c.item.superseded:
            return DeliveryUpdate(
                c.item.record_id,
                "superseded",
                reason="a newer level of this item was already posted",
                count_attempt=False,
            )
        return DeliveryUpdate(c.item.record_id, "exception", reason=c.problem)

    async def _call(self, batch: Sequence[_Claimed]) -> list[DeliveryUpdate]:
        routed = [c.routed for c in batch if c.routed is not None]
        async with self._gate:
            if not self.breaker.allow() and self.breaker.state == "open":
                wait = self.breaker.reopens_in()
                return [self._deferred(c, wait, "circuit open") for c in batch]
            try:
                result = await self.connector.deliver(routed)
            except Exception as exc:  # a connector bug must not lose the claim silently
                log.exception(
                    "Connector failed.", extra={"target": self.settings.name, "error": str(exc)}
                )
                result = DeliveryResult(
                    retry=[Outcome(r.id, reason=f"connector error: {exc}"[:300]) for r in routed]
                )
        if _target_failure(result):
            self.breaker.failure()
            if self.breaker.state != "closed":
                log.warning(
                    "Circuit opened.",
                    extra={"target": self.settings.name, "failures": self.breaker.failures},
                )
        elif result.accepted or result.rejected:
            self.breaker.success()
        return self._updates(batch, result)

    def _deferred(
        self, c: _Claimed, wait: float, reason: str, outcome: Outcome | None = None
    ) -> DeliveryUpdate:
        return DeliveryUpdate(
            c.item.record_id,
            "deferred",
            reason=reason,
            retry_at=utcnow() + timedelta(seconds=max(wait, 0.1)),
            count_attempt=False,
            ref=outcome.ref if outcome else None,
            status=outcome.status if outcome else None,
            exchanges=[e.as_dict() for e in outcome.exchanges] if outcome else [],
            dry_run=self.settings.dry_run,
        )

    def _updates(self, batch: Sequence[_Claimed], result: DeliveryResult) -> list[DeliveryUpdate]:
        by_id = {c.item.record_id: c for c in batch}
        updates: list[DeliveryUpdate] = []
        dry = self.settings.dry_run
        seen: set[int] = set()
        # A target's error text may quote what it was sent (an email, a phone number):
        # reasons are redacted once, here, before they reach the queue, the log or a page.
        for outcome in (*result.rejected, *result.retry):
            outcome.reason = redact_text(outcome.reason)
        for outcome in result.accepted:
            seen.add(outcome.id)
            updates.append(
                DeliveryUpdate(
                    outcome.id,
                    "posted",
                    status=outcome.status,
                    ref=outcome.ref,
                    exchanges=[e.as_dict() for e in outcome.exchanges],
                    dry_run=dry,
                    confirmed=None if outcome.confirmed is None else str(outcome.confirmed),
                )
            )
        for outcome in result.rejected:
            seen.add(outcome.id)
            updates.append(
                DeliveryUpdate(
                    outcome.id,
                    "exception",
                    reason=outcome.reason or "rejected by the target",
                    status=outcome.status,
                    exchanges=[e.as_dict() for e in outcome.exchanges],
                    dry_run=dry,
                )
            )
            self._log_exception(by_id.get(outcome.id), outcome.reason, outcome.status)
        for outcome in result.retry:
            seen.add(outcome.id)
            held = by_id.get(outcome.id)
            if outcome.hold and held is not None:
                # The target's limit, not the record: wait for it without using an attempt.
                wait = outcome.retry_after if outcome.retry_after is not None else 60.0
                wait = min(wait, RETRY_AFTER_CAP)
                updates.append(self._deferred(held, wait, outcome.reason, outcome))
                continue
            updates.append(self._retry(held, outcome))
        for record_id, c in by_id.items():
            if record_id not in seen:
                reason = "the connector gave no verdict for this record"
                updates.append(self._retry(c, Outcome(record_id, reason=reason)))
        return updates

    def _retry(self, c: _Claimed | None, outcome: Outcome) -> DeliveryUpdate:
        attempts = (c.item.attempts if c else 0) + 1
        exchanges = [e.as_dict() for e in outcome.exchanges]
        if attempts >= self.settings.max_attempts:
            reason = f"gave up after {attempts} attempts: {outcome.reason}"
            self._log_exception(c, reason, outcome.status)
            return DeliveryUpdate(
                outcome.id,
                "exception",
                reason=reason,
                status=outcome.status,
                exchanges=exchanges,
            )
        delay = retry_delay(attempts, self.settings, outcome.retry_after, self._rng)
        log.info(
            "Delivery will be retried.",
            extra={
                "target": self.settings.name,
                "key": c.item.key if c else None,
                "correlation_id": c.item.correlation_id if c else None,
                "status": outcome.status,
                "attempt": attempts,
                "retry_in_seconds": round(delay, 1),
                "reason": outcome.reason[:200],
            },
        )
        return DeliveryUpdate(
            outcome.id,
            "retry",
            reason=outcome.reason,
            status=outcome.status,
            retry_at=utcnow() + timedelta(seconds=delay),
            exchanges=exchanges,
        )

    def _log_exception(self, c: _Claimed | None, reason: str, status: int | None) -> None:
        log.warning(
            "Record needs a person.",
            extra={
                "target": self.settings.name,
                "key": c.item.key if c else None,
                "correlation_id": c.item.correlation_id if c else None,
                "status": status,
                "reason": reason[:300],
            },
        )


class Delivery:
    """The router and one worker per configured target, over one inbox."""

    def __init__(
        self,
        config: CentralConfig,
        inbox: Inbox,
        *,
        transport_for: TransportFactory | None = None,
        rng: random.Random | None = None,
        validated: Validated | None = None,
        downlink: Downlink | None = None,
    ) -> None:
        self.config = config
        self.inbox = inbox
        # Where a fulfilment finds the order it answers: the inbox's own downlink.
        self.downlink: Downlink = downlink or inbox
        # Shared with the intake in a relay process: a record it took is not validated again.
        self.validated = validated if validated is not None else Validated()
        self.relay_id = config.relay_id
        # Every call is in the audit trail; httpx's own request lines would only repeat
        # them, URL and all, in the relay's log.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.lease = timedelta(seconds=config.delivery.lease_seconds)
        self._sku_stamp: tuple[int, int] | None = None
        skus = None
        if config.routing.sku_table is not None:
            self._sku_stamp = _stamp(config.routing.sku_table)
            skus = load_sku_table(config.routing.sku_table)
        self._skus = skus
        self._stores = dict(config.stores)
        self._xref: list[StoreXref] | None = None
        self.router = Router(config.targets, self._stores, config.routing, skus)
        self._clients: list[httpx.AsyncClient] = []
        self.workers: list[TargetWorker] = []
        for settings in config.targets:
            registration = CONNECTORS[settings.type]
            transport: httpx.AsyncBaseTransport | None
            if settings.dry_run:
                transport = DryRunTransport(registration.dry_run)
            else:
                transport = transport_for(settings) if transport_for else None
            client = target_client(
                settings,
                transport=transport,
                limits=httpx.Limits(max_connections=settings.concurrency * 2),
            )
            self._clients.append(client)
            self.workers.append(
                TargetWorker(
                    settings,
                    registration.factory(settings, client),
                    inbox,
                    relay_id=self.relay_id,
                    lease=self.lease,
                    rng=rng,
                    validated=self.validated,
                )
            )

    def _fresh_skus(self) -> None:
        """Read the SKU table again when its file changed, so a mapping added for a record
        in the exception queue routes it on retry without a restart. A table that no longer
        reads keeps the one in use, said once in the log."""
        path = self.config.routing.sku_table
        if path is None:
            return
        stamp = _stamp(path)
        if stamp == self._sku_stamp:
            return
        self._sku_stamp = stamp
        try:
            skus = load_sku_table(path)
        except ConfigError as exc:
            log.error(
                "SKU table changed but cannot be read; the one in use stays.",
                extra={"file": str(path), "problems": exc.problems},
            )
            return
        cfg = self.config
        self._skus = skus
        self.router = Router(cfg.targets, self._stores, cfg.routing, skus)
        log.info("SKU table read again.", extra={"file": str(path)})

    async def _fresh_stores(self) -> None:
        """Lay the store cross-reference (`stores import`) over the config's store tables
        again when it changed, so a store imported while the relay runs routes at once."""
        xref = await self.inbox.store_xref()
        if xref == self._xref:
            return
        self._xref = xref
        cfg = self.config
        self._stores = stores_with_xref(cfg.stores, cfg.targets, xref)
        self.router = Router(cfg.targets, self._stores, cfg.routing, self._skus)

    async def route_once(self, *, now: datetime | None = None) -> int:
        """Route a batch of received records; returns how many."""
        self._fresh_skus()
        claimed = await self.inbox.claim(
            self.config.delivery.route_batch,
            self.relay_id,
            self.lease,
            now=now,
            states=(RecordState.RECEIVED,),
        )
        if not claimed:
            return 0
        await self._fresh_stores()
        decisions = []
        fulfilled: list[Fulfillment] = []
        for record in claimed:
            try:
                valid = self.validated.record(record.key, record.body)
                order = None
                if isinstance(valid, Fulfillment):
                    order = await self._order_of(valid)
                decision = self.router.decide(record.id, record.body, valid, order=order)
                if isinstance(valid, Fulfillment) and not decision.error:
                    fulfilled.append(valid)
            except ValueError as exc:
                decision = RouteDecision(record.id, error=f"stored record is invalid: {exc}")
            if decision.error:
                log.warning(
                    "Record cannot be routed.",
                    extra={
                        "key": record.key,
                        "correlation_id": record.correlation_id,
                        "reason": decision.error,
                    },
                )
            decisions.append(decision)
        await self.inbox.route_records(decisions, now=now)
        for done in fulfilled:
            # What the store did, whatever the platform answers: the past-promise count
            # and reconciliation read it.
            await self.downlink.mark_fulfilled(done.store, done.order_number, done.status)
        # A refused transaction the store has read since (after a fix, under the same
        # identity) closes its exception, whichever of the two arrived first.
        for refused_id, key in await self.inbox.settle_refused(
            [(r.id, r.kind, r.key) for r in claimed], now=now
        ):
            log.info("Refused transaction read again.", extra={"record_id": refused_id, "key": key})
        return len(claimed)

    async def _order_of(self, record: Fulfillment) -> OnlineOrder | None:
        """The online order central sent the store under the fulfilment's number."""
        row = await self.downlink.down_order(record.store, record.order_number)
        if row is None:
            return None
        body = down_body_adapter.validate_json(row.body)
        return body if isinstance(body, OnlineOrder) else None

    async def run_once(self, *, now: datetime | None = None) -> int:
        """One pass: route, then every target once. Returns the work done."""
        done = await self.route_once(now=now)
        counts = await asyncio.gather(*(w.run_once(now=now) for w in self.workers))
        return done + sum(counts)

    async def drain(self, *, rounds: int = 1000) -> None:
        """Run passes until nothing is due (tests and one-shot runs)."""
        for _ in range(rounds):
            if not await self.run_once():
                return

    async def run(self, stop: asyncio.Event, *, grace: float = 30) -> None:
        """Work until `stop`; calls in flight then finish and are recorded (up to `grace`
        seconds; a call cut off after that is re-sent as a possible repeat)."""
        tasks = [asyncio.create_task(self._route_loop(stop), name="route")]
        tasks += [
            asyncio.create_task(self._worker_loop(w, stop), name=f"deliver-{w.settings.name}")
            for w in self.workers
        ]
        purge = asyncio.create_task(self._purge_loop(stop), name="audit-purge")
        try:
            await stop.wait()
            await asyncio.wait(tasks, timeout=grace)
        finally:
            for task in [*tasks, purge]:
                task.cancel()
            for task in [*tasks, purge]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.aclose()

    async def _route_loop(self, stop: asyncio.Event) -> None:
        await self._loop(stop, self.route_once, "routing")

    async def _worker_loop(self, worker: TargetWorker, stop: asyncio.Event) -> None:
        await self._loop(stop, worker.run_once, f"delivery to {worker.settings.name}")

    async def _loop(self, stop: asyncio.Event, step: Callable[[], Any], what: str) -> None:
        while not stop.is_set():
            try:
                busy = await step()
            except Exception as exc:  # the database may be briefly away; keep going
                log.exception("Work pass failed.", extra={"work": what, "error": str(exc)})
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.delivery.poll_seconds)

    async def _purge_loop(self, stop: asyncio.Event) -> None:
        keep = timedelta(days=self.config.audit.retention_days)
        while not stop.is_set():
            try:
                purged = await self.inbox.purge_audit(keep)
                if purged:
                    log.info("Audit entries purged.", extra={"entries": purged})
            except Exception as exc:
                log.exception("Audit purge failed.", extra={"error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 3600)

    async def aclose(self) -> None:
        for worker in self.workers:
            await worker.connector.aclose()
        for client in self._clients:
            await client.aclose()
