"""The order sources of one relay: each configured source polled every
`interval_seconds`, its cursor moved by compare-and-set so two relays never both move
past the same page, and every order queued once for its store.

One poll of a source, page by page:

1. read the orders changed after the durable cursor (`Downlink.source_cursor`);
2. queue each message for its store, idempotent by `order_key` — an order read again
   after a change that leaves the store's copy as it was (our own fulfilment, a payment
   note) queues nothing;
3. move the cursor from what was read to the page's last order (`advance_cursor`); if
   another relay moved it first, this relay stops and reads from the new cursor next time;
4. only the relay that moved the cursor logs and counts the page's refusals.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

from contract import OnlineOrder, OrderCancel, down_body_adapter, order_key

from .._polling import TransportFactory, poll_forever, target_client
from ..connectors import CONNECTORS
from ..inbox import StoreXref, utcnow
from ..routing import SkuTable, load_sku_table, stores_with_xref
from ._base import Page, Platform, SkuMap, SourceError, SourceInbox, StoreMap
from ._settings import OrderSourceSettings

if TYPE_CHECKING:
    from ..config import CentralConfig

__all__ = ["OrderSources", "PollCounts", "SourceRunner", "build_platform"]

log = logging.getLogger("tillbridge.central.sources")

MAX_PAGES_PER_POLL = 20
REFUSAL_KIND = "order"
"""The `kind` of a refused online order among the relay's refusals (stats: refused)."""


@dataclass
class PollCounts:
    """What the polls of one source did, since the relay started."""

    queued: int = 0
    unchanged: int = 0
    skipped: int = 0
    refused: int = 0
    errors: int = 0
    lost_race: int = 0
    last_error: str = ""
    last_poll: datetime | None = None
    by_store: dict[str, int] = field(default_factory=dict)


class SourceRunner:
    """Polls one platform into the downlink."""

    def __init__(
        self,
        name: str,
        settings: OrderSourceSettings,
        platform: Platform,
        inbox: SourceInbox,
        *,
        config: CentralConfig | None = None,
        store_map: StoreMap | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.platform = platform
        self.inbox = inbox
        self.counts = PollCounts()
        self._config = config
        self._store_map = store_map
        self._xref: list[StoreXref] | None = None

    @property
    def cursor_name(self) -> str:
        return f"order_source:{self.name}"

    async def poll_once(self, *, now: datetime | None = None) -> int:
        """Read and queue until the platform has nothing more, another relay takes over,
        or `MAX_PAGES_PER_POLL` pages were read; returns the messages queued now."""
        queued = 0
        await self._fresh_stores()
        for _ in range(MAX_PAGES_PER_POLL):
            moment = now or utcnow()
            before = await self.inbox.source_cursor(self.cursor_name)
            try:
                page = await self.platform.page(before, moment)
            except SourceError as exc:
                self.counts.errors += 1
                self.counts.last_error = str(exc)[:300]
                log.warning(
                    "Order source cannot be read.", extra={"source": self.name, "error": str(exc)}
                )
                break
            self.counts.last_poll = moment
            if page.cursor is None:
                break
            queued += await self._queue(page)
            # Refusals are kept before the cursor moves past them: a relay that dies in
            # between reads the page again and keeps them again (two relays on the same
            # page may both keep one), but an order no store can take is never unseen.
            await self._refuse(page)
            if not await self.inbox.advance_cursor(self.cursor_name, before, page.cursor):
                self.counts.lost_race += 1
                log.info(
                    "Another relay read this page of orders first.", extra={"source": self.name}
                )
                break
            self.counts.skipped += page.skipped
            if not page.more:
                break
        return queued

    async def _fresh_stores(self) -> None:
        """Map the platform's stores by the store cross-reference (`stores import`) laid
        over the config's tables, read again when it changed."""
        reader = getattr(self.inbox, "store_xref", None)
        if self._store_map is None or self._config is None or reader is None:
            return
        xref: list[StoreXref] = await reader()
        if xref != self._xref:
            self._xref = xref
            cfg = self._config
            self._store_map.use(stores_with_xref(cfg.stores, cfg.targets, xref))

    async def _queue(self, page: Page) -> int:
        queued = 0
        for message in page.messages:
            if not await self._wanted(message):
                self.counts.unchanged += 1
                continue
            body = down_body_adapter.dump_json(message).decode()
            key = order_key(message)
            seq, new = await self.inbox.enqueue(message.store, message.kind, key, body)
            if not new:
                self.counts.unchanged += 1
                continue
            queued += 1
            self.counts.queued += 1
            self.counts.by_store[message.store] = self.counts.by_store.get(message.store, 0) + 1
            log.info(
                "Online order queued for the store.",
                extra={
                    "source": self.name,
                    "store": message.store,
                    "kind": message.kind,
                    "order_number": message.order_number,
                    "key": key,
                    "seq": seq,
                },
            )
        return queued

    async def _wanted(self, message: OnlineOrder | OrderCancel) -> bool:
        """Whether the store needs `message`: a cancel only for an order it was sent, an
        order only when it differs from the copy the store holds by more than version."""
        sent = await self.inbox.down_order(message.store, message.order_number)
        if isinstance(message, OrderCancel):
            return sent is not None
        if sent is None:
            return True
        held = down_body_adapter.validate_json(sent.body)
        if not isinstance(held, OnlineOrder):  # pragma: no cover - down_order gives orders
            return True
        return held.model_copy(update={"version": 0}) != message.model_copy(update={"version": 0})

    async def _refuse(self, page: Page) -> None:
        for refusal in page.refusals:
            self.counts.refused += 1
            log.warning(
                "Online order cannot go to a store.",
                extra={
                    "source": self.name,
                    "store": refusal.store,
                    "order_number": refusal.order_number,
                    "reason": refusal.reason,
                },
            )
            await self.inbox.record_refusal(
                REFUSAL_KIND,
                refusal.store or "",
                None,
                f"{self.name}:{refusal.order_number}",
                refusal.reason,
            )

    async def run(self, stop: asyncio.Event) -> None:
        await poll_forever(
            self.poll_once,
            stop,
            self.settings.interval_seconds,
            self.counts,
            failed="Order source poll failed.",
            extra={"source": self.name},
            log=log,
        )


def build_platform(
    name: str,
    source: OrderSourceSettings,
    config: CentralConfig,
    client: httpx.AsyncClient,
    skus: SkuTable | None = None,
) -> Platform:
    """The reader for one configured source, around the target's connector and `client`."""
    from .adobe_commerce import AdobeCommerceSource
    from .commercetools import CommercetoolsSource

    target = next(t for t in config.targets if t.name == source.target)
    table = skus or SkuTable()
    sku_map = SkuMap(table, target, config.routing.sku_mode)
    connector = CONNECTORS[target.type].factory(target, client)
    if source.type == "commercetools":
        from ..connectors.commercetools.connector import CommercetoolsConnector

        assert isinstance(connector, CommercetoolsConnector)
        stores = StoreMap(source.stores, config.stores, target, "store")
        return CommercetoolsSource(
            name, source, connector, stores, sku_map, locale=getattr(target, "locale", "en")
        )
    from ..connectors.adobe_commerce.connector import AdobeCommerceConnector

    assert isinstance(connector, AdobeCommerceConnector)
    stores = StoreMap(source.stores, config.stores, target, "source_code")
    return AdobeCommerceSource(name, source, connector, stores, sku_map)


class OrderSources:
    """Every enabled order source of the relay's config, each polled on its own."""

    def __init__(
        self,
        config: CentralConfig,
        inbox: SourceInbox,
        *,
        transport_for: TransportFactory | None = None,
    ) -> None:
        skus = load_sku_table(config.routing.sku_table) if config.routing.sku_table else None
        self._clients: list[httpx.AsyncClient] = []
        self.runners: list[SourceRunner] = []
        for name, source in config.order_sources.items():
            if not source.enabled:
                continue
            target = next(t for t in config.targets if t.name == source.target)
            if target.dry_run:
                # A dry run sends nothing and has no credentials to read with.
                log.info(
                    "Order source reads nothing: its target is a dry run.",
                    extra={"source": name, "target": target.name},
                )
                continue
            client = target_client(target, transport_for)
            self._clients.append(client)
            platform = build_platform(name, source, config, client, skus)
            self.runners.append(
                SourceRunner(
                    name,
                    source,
                    platform,
                    inbox,
                    config=config,
                    store_map=getattr(platform, "store_map", None),
                )
            )

    async def poll_once(self, *, now: datetime | None = None) -> int:
        counts = await asyncio.gather(*(r.poll_once(now=now) for r in self.runners))
        return sum(counts)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(r.run(stop) for r in self.runners))

    async def aclose(self) -> None:
        for runner in self.runners:
            await runner.platform.aclose()
        for client in self._clients:
            await client.aclose()
