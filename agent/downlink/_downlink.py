"""The downlink at the store: messages central sends on `{prefix}/{store}/down` are
committed to `downlink.db` and only then acknowledged on `{prefix}/{store}/downack`;
a writer loop then hands them to the POS.

The loop writes in seq order. A message the POS does not take stays pending and is tried
again with exponential backoff; the messages of the same order after it (its
cancellation) wait behind it, other orders go on. Reference data (customers, items) goes
to `agent.reference` instead, all that is due in one pass, coalesced to the newest state
of each entity: a store back from an absence writes each entity once, as it is now.
A message waiting longer than `alert_after_seconds` raises an alert in status and the
heartbeat. Nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from agent.config import AgentConfig
from agent.reference import Reference, RefState
from agent.writers import DownItem, WriteError, Writer
from contract import (
    REFERENCE_KINDS,
    CustomerPurge,
    DownAck,
    EnvelopeError,
    OnlineOrder,
    OrderCancel,
    RefCustomer,
    RefItem,
    ResyncDone,
    decode_down,
    down_body_adapter,
    reference_entity,
)

from ._store import DownlinkStore, DownRow, DownSummary

__all__ = ["Downlink"]

log = logging.getLogger("tillbridge.agent.downlink")

_IDLE_SECONDS = 5.0


class Downlink:
    """One store's downlink: `handle` for each batch, `run(stop)` for the writer loop."""

    def __init__(
        self,
        config: AgentConfig,
        store: DownlinkStore,
        writer: Writer,
        *,
        clock: Callable[[], float] = time.time,
        reference: Reference | None = None,
    ) -> None:
        self.config = config
        self.reference = reference
        """Where customer and item messages go; None: they wait (reference data is off)."""
        self.settings = config.downlink
        self.store = store
        self.writer = writer
        self.clock = clock
        self.wake = asyncio.Event()
        self._alerted: set[int] = set()
        self.batches = 0
        self.refused_batches = 0
        self.clashes = 0
        """Messages refused because their seq names another message this store holds."""

    # -- receiving ------------------------------------------------------------------------

    async def handle(self, payload: bytes) -> DownAck | None:
        """Commit a batch; the answer to publish, or None for a batch refused whole."""
        try:
            batch = decode_down(payload)
        except EnvelopeError as exc:
            self.refused_batches += 1
            log.warning("Downlink batch refused: not a valid batch.", extra={"error": str(exc)})
            return None
        if batch.store != self.config.store:
            # The broker's ACL lets a store read its own topic only; a batch naming another
            # store is a relay or routing fault, never something to hand to this POS.
            self.refused_batches += 1
            log.warning(
                "Downlink batch refused: it names another store.",
                extra={"batch_id": batch.batch_id, "batch_store": batch.store},
            )
            return None
        held, clashes, through = await self.store.commit(batch.messages, self.clock())
        self.batches += 1
        if clashes:
            self.clashes += len(clashes)
            log.error(
                "Central sent other messages under seqs this store already holds; not "
                "acknowledged (was central's downlink queue rebuilt?).",
                extra={"batch_id": batch.batch_id, "seqs": clashes[:20]},
            )
        log.info(
            "Downlink batch committed.",
            extra={"batch_id": batch.batch_id, "messages": len(held), "through": through},
        )
        self.wake.set()
        return DownAck(
            store=self.config.store, batch_id=batch.batch_id, committed=held, through=through
        )

    # -- writing --------------------------------------------------------------------------

    def notify(self) -> None:
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Write until `stop` is set; a failure of the loop itself is logged and retried."""
        while not stop.is_set():
            try:
                wait = await self.write_due()
            except (OSError, sqlite3.Error) as exc:  # the disk or database: try again soon
                log.error("Downlink writer loop failed.", extra={"error": repr(exc)})
                wait = self.settings.retry_min_seconds
            self.wake.clear()
            stopping = asyncio.ensure_future(stop.wait())
            woken = asyncio.ensure_future(self.wake.wait())
            try:
                await asyncio.wait(
                    {stopping, woken}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (stopping, woken):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def write_due(self) -> float:
        """Write every message that is due, in seq order; returns seconds until the next
        one is due (at most a few seconds: new messages also wake the loop)."""
        now = self.clock()
        blocked: set[str] = set()
        next_due = now + _IDLE_SECONDS
        rows = await self.store.unwritten()
        if self.reference is not None:
            reference = [r for r in rows if r.kind in REFERENCE_KINDS]
            rows = [r for r in rows if r.kind not in REFERENCE_KINDS]
            if reference:
                # They fail and wait together (one file per pass), so the pass is due when
                # the last of them is; a message that came meanwhile joins it.
                due = max(r.next_attempt for r in reference)
                if due > now:
                    next_due = min(next_due, due)
                    self._alert(reference[0], now)
                else:
                    await self._write_reference(reference)
        for row in rows:
            if row.order_ref in blocked:
                continue
            if row.next_attempt > now:
                blocked.add(row.order_ref)
                next_due = min(next_due, row.next_attempt)
                self._alert(row, now)
                continue
            if not await self._write(row):
                blocked.add(row.order_ref)
        return max(0.05, next_due - self.clock())

    async def _write(self, row: DownRow) -> bool:
        try:
            body = down_body_adapter.validate_json(row.body)
        except ValidationError as exc:
            reason = f"the message cannot be read: {exc.errors()[0]['msg']}"
            await self._failed(row, WriteError(reason, permanent=True))
            return False
        if not isinstance(body, OnlineOrder | OrderCancel):
            # Reference data is off at this store: it waits here, kept and retried.
            reason = f"{body.kind} messages wait: reference data is off here ([agent.reference])"
            await self._failed(row, WriteError(reason, permanent=False))
            return False
        prior = None
        if body.kind == "order_cancel":
            prior = await self.store.written_as(row.order_ref)
        try:
            written_as = await self.writer.write(
                DownItem(
                    seq=row.seq,
                    key=row.key,
                    body=body,
                    issued_at=datetime.fromisoformat(row.issued_at),
                    prior=prior,
                )
            )
        except WriteError as exc:
            await self._failed(row, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - a writer's bug keeps the order pending
            await self._failed(row, WriteError(f"the writer failed: {type(exc).__name__}: {exc}"))
            return False
        await self.store.mark_written(row.seq, written_as, self.clock())
        self._alerted.discard(row.seq)
        log.info(
            "Order written to the POS.",
            extra={
                "seq": row.seq,
                "kind": row.kind,
                "order_number": row.order_number,
                "writer": self.writer.name,
                "written_as": written_as,
                "attempts": row.attempts + 1,
            },
        )
        return True

    async def _write_reference(self, rows: list[DownRow]) -> None:
        """One pass of reference data: the newest state of each entity is stored and
        written once; the older ones are settled as superseded by it."""
        assert self.reference is not None
        newest: dict[str, RefState] = {}
        superseded: dict[int, str] = {}
        taken: list[DownRow] = []
        for row in rows:  # seq order: a later state replaces an earlier one
            try:
                body = down_body_adapter.validate_json(row.body)
            except ValidationError as exc:
                reason = f"the message cannot be read: {exc.errors()[0]['msg']}"
                await self._failed(row, WriteError(reason, permanent=True))
                continue
            if isinstance(body, ResyncDone):
                # Central has queued all of it (maybe nothing): the request is answered.
                if await self.reference.store.close_resync(body.scope, body.requested_at):
                    log.info(
                        "Resync answered: central sent the current state.",
                        extra={"kind": body.scope},
                    )
                superseded[row.seq] = "resync answered"
                taken.append(row)
                continue
            assert isinstance(body, RefCustomer | CustomerPurge | RefItem)
            entity = reference_entity(body)
            earlier = newest.get(entity)
            if earlier is not None:
                superseded[earlier.seq] = f"superseded by seq {row.seq}"
            newest[entity] = RefState(row.seq, body, datetime.fromisoformat(row.issued_at))
            taken.append(row)
        if not newest:
            if superseded:
                await self.store.settle_reference(superseded, self.clock(), purged=[])
            return
        states = sorted(newest.values(), key=lambda s: s.seq)
        try:
            written = await self.reference.take(states)
        except WriteError as exc:
            await self._pass_failed(taken, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a writer's bug keeps the data pending
            await self._pass_failed(
                taken, WriteError(f"the writer failed: {type(exc).__name__}: {exc}")
            )
            return
        purged = [s.entity for s in states if isinstance(s.body, CustomerPurge)]
        await self.store.settle_reference({**superseded, **written}, self.clock(), purged=purged)
        for row in taken:
            self._alerted.discard(row.seq)
        kinds: dict[str, int] = {}
        for state in states:
            kinds[state.body.kind] = kinds.get(state.body.kind, 0) + 1
        log.info(
            "Reference data stored and written to the POS.",
            extra={
                "messages": len(taken),
                "entities": len(states),
                "kinds": kinds,
                "through_seq": states[-1].seq,
                "written_as": sorted(set(written.values())),
            },
        )

    def _delay(self, attempts: int, error: WriteError) -> float:
        settings = self.settings
        if error.permanent:
            return settings.retry_max_seconds
        backoff: float = settings.retry_min_seconds * 2 ** (attempts - 1)
        return min(settings.retry_max_seconds, backoff) * random.uniform(0.8, 1.0)

    async def _pass_failed(self, rows: list[DownRow], error: WriteError) -> None:
        """A pass of reference data the POS did not take: all of it waits together, one
        commit and one log line however many messages (a resync brings thousands)."""
        attempts = max(row.attempts for row in rows) + 1
        delay = self._delay(attempts, error)
        now = self.clock()
        await self.store.mark_failed_many([r.seq for r in rows], error.reason, now + delay)
        log.warning(
            "Reference data not written to the POS; it stays pending and is tried again.",
            extra={
                "messages": len(rows),
                "first_seq": rows[0].seq,
                "error": error.reason,
                "attempts": attempts,
                "retry_in_seconds": round(delay, 1),
            },
        )
        self._alert(rows[0], now)

    async def _failed(self, row: DownRow, error: WriteError) -> None:
        attempts = row.attempts + 1
        delay = self._delay(attempts, error)
        now = self.clock()
        await self.store.mark_failed(row.seq, error.reason, now + delay)
        log.warning(
            "Order not written to the POS; it stays pending and is tried again.",
            extra={
                "seq": row.seq,
                "kind": row.kind,
                "order_number": row.order_number,
                "writer": self.writer.name,
                "error": error.reason,
                "permanent": error.permanent,
                "attempts": attempts,
                "retry_in_seconds": round(delay, 1),
            },
        )
        self._alert(row, now)

    def _alert(self, row: DownRow, now: float) -> None:
        """Log once per message when it has waited past `alert_after_seconds`."""
        waited = now - row.received_at
        if waited >= self.settings.alert_after_seconds and row.seq not in self._alerted:
            self._alerted.add(row.seq)
            log.error(
                "Order waiting for the POS past the alert time; still retrying.",
                extra={
                    "seq": row.seq,
                    "order_number": row.order_number,
                    "waiting_seconds": round(waited),
                    "attempts": row.attempts,
                    "error": row.last_error,
                },
            )

    # -- status ---------------------------------------------------------------------------

    async def summary(self) -> DownSummary:
        return await self.store.summary(self.settings.alert_after_seconds, self.clock())

    async def purge(self) -> int:
        days = self.settings.keep_written_days
        return await self.store.purge(self.clock() - days * 86400)
