"""Reference data at the store: the downlink's writer loop hands each pass's customer
and item messages here, coalesced to the newest state of each entity; they are stored
in `reference.db` and written to the POS by the configured reference writers.

A customer purge removes the customer from `reference.db`, from the files written and
not yet taken by the POS, and (the downlink does it) from the bodies in `downlink.db`;
a writer whose format can say "delete" writes that too.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from agent.config import AgentConfig
from agent.writers import RefBatch, ReferenceWriter
from contract import CustomerPurge

from ._store import RESYNC_KINDS, ReferenceStore, RefState

__all__ = ["Reference", "heartbeat_resync", "open_reference", "reference_status"]

log = logging.getLogger("tillbridge.agent.reference")

STORED_ONLY = "reference.db"
"""Where a state went when no writer takes its kind: only the local store (lookup)."""


class Reference:
    def __init__(
        self, config: AgentConfig, store: ReferenceStore, writers: Sequence[ReferenceWriter]
    ) -> None:
        self.config = config
        self.store = store
        self.writers = list(writers)

    @property
    def writer_names(self) -> list[str]:
        return [w.name for w in self.writers]

    async def take(self, states: Sequence[RefState]) -> dict[int, str]:
        """Store the states, then write them to the POS; where each seq went. Raises
        `WriteError` when a writer fails: the caller keeps them all pending and tries the
        same again (storing and writing are both idempotent)."""
        answered, held = await self.store.apply(states)
        for kind in answered:
            log.info("Resync answered: central sent the current state.", extra={"kind": kind})
        purges = [s.body for s in states if isinstance(s.body, CustomerPurge)]
        written: dict[int, str] = {s.seq: STORED_ONLY for s in states}
        # A version the store held already (a resync answer, a resend) reached the POS
        # with its first copy: it is not written again.
        states = [s for s in states if s.seq not in held]
        for writer in self.writers:
            if purges and "customer_purge" in writer.kinds:
                changed = await writer.forget(purges)
                if changed:
                    log.info(
                        "Purged customers removed from import files not yet taken.",
                        extra={"writer": writer.name, "files": changed},
                    )
            entries = [(s.seq, s.body) for s in states if s.body.kind in writer.kinds]
            if not entries:
                continue
            name = await writer.write(RefBatch(self.config.store, entries, self.config.zone))
            if name is not None:
                for seq, _ in entries:
                    written[seq] = name
        await self.store.mark_written(states)
        return written


async def open_reference(config: AgentConfig, key: bytes) -> Reference:
    """The reference store and writers the config names. A `reference.db` made on this
    start (first start, or the old one lost or damaged) asks central for customers and
    items whole, unless `resync_when_lost` is off."""
    from agent._seal import Sealer
    from agent.writers import make_reference_writers

    store = await ReferenceStore.open(config.reference_path, Sealer(key))
    if store.fresh and config.reference.resync_when_lost:
        await store.request_resync(RESYNC_KINDS, "reference.db was new at start")
        log.warning(
            "Reference store is new (first start, or the old one was lost): asking central "
            "for customers and items whole.",
            extra={"path": str(config.reference_path)},
        )
    return Reference(config, store, make_reference_writers(config))


async def heartbeat_resync(reference: Reference | None) -> dict[str, Any]:
    """The heartbeat's `resync` and `resync_requested_at`: every open request, asked as of
    the newest of them (central answers each request once)."""
    if reference is None:
        return {}
    pending = await reference.store.pending_resync()
    if not pending:
        return {}
    return {"resync": sorted(pending), "resync_requested_at": max(pending.values())}


async def reference_status(reference: Reference | None) -> dict[str, Any] | None:
    """What status shows of reference data: counts, last change, open resync requests."""
    if reference is None:
        return None
    summary = await reference.store.summary()
    return {
        **dataclasses.asdict(summary),
        "writers": reference.writer_names,
        "folder": str(reference.config.reference.folder or ""),
    }
