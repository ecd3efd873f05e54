"""The reference feeds of one relay: each configured feed polled every
`interval_seconds`, its cursor moved by compare-and-set so two relays never both move
past the same page.

One poll of a feed, page by page:

1. read the entities changed after the durable cursor (`Downlink.source_cursor`);
2. keep each as the entity's latest state (`put_reference`; an older state read late
   changes nothing) and fan it out to the stores whose view of it changed;
3. purge the customers the CRM no longer lets reach the stores;
4. move the cursor to the page's last entity (`advance_cursor`); if another relay moved
   it first, stop and read from the new cursor next time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

from contract import RefItem, down_body_adapter, reference_entity

from .._polling import TransportFactory, poll_forever, target_client
from ..connectors import CONNECTORS
from ..inbox import utcnow
from ..routing import SkuTable, load_sku_table
from ..sources import SkuMap
from ._base import Feed, FeedError
from ._fanout import Fanout, ReferenceInbox
from ._settings import FeedSettings

if TYPE_CHECKING:
    from ..config import CentralConfig

__all__ = ["FeedCounts", "FeedRunner", "Feeds", "build_feed"]

log = logging.getLogger("tillbridge.central.feeds")

MAX_PAGES_PER_POLL = 20


@dataclass
class FeedCounts:
    """What the polls of one feed did, since the relay started."""

    read: int = 0
    queued: int = 0
    stale: int = 0
    unreadable: int = 0
    withdrawn: int = 0
    errors: int = 0
    lost_race: int = 0
    last_error: str = ""
    last_poll: datetime | None = None


class FeedRunner:
    """Polls one feed into the reference table and the stores' downlinks."""

    def __init__(
        self,
        name: str,
        settings: FeedSettings,
        feed: Feed,
        inbox: ReferenceInbox,
        fanout: Fanout,
    ) -> None:
        self.name = name
        self.settings = settings
        self.feed = feed
        self.inbox = inbox
        self.fanout = fanout
        self.counts = FeedCounts()

    @property
    def cursor_name(self) -> str:
        return f"feed:{self.name}"

    async def poll_once(self, *, now: datetime | None = None) -> int:
        """Read and fan out until the feed has nothing more, another relay takes over, or
        `MAX_PAGES_PER_POLL` pages were read; returns the messages queued now."""
        queued = 0
        for _ in range(MAX_PAGES_PER_POLL):
            moment = now or utcnow()
            before = await self.inbox.source_cursor(self.cursor_name)
            try:
                page = await self.feed.page(before, moment)
            except FeedError as exc:
                self.counts.errors += 1
                self.counts.last_error = str(exc)[:300]
                log.warning("Feed cannot be read.", extra={"feed": self.name, "error": str(exc)})
                break
            self.counts.last_poll = moment
            if page.cursor is None:
                break
            scopes = await self.fanout.scopes()
            for body in page.entities:
                self.counts.read += 1
                held = await self.inbox.put_reference(
                    reference_entity(body),
                    "item" if isinstance(body, RefItem) else "customer",
                    body.source,
                    body.version,
                    down_body_adapter.dump_json(body).decode(),
                    body.changed_at,
                )
                if not held:
                    self.counts.stale += 1
                    continue
                sent = await self.fanout.send(body, scopes)
                queued += sent
                self.counts.queued += sent
            for gone in page.withdrawn:
                if await self.inbox.drop_reference(f"customer:{gone.source}:{gone.customer_id}"):
                    self.counts.withdrawn += 1
                    queued += await self.fanout.purge(gone.source, gone.customer_id)
            for what in page.unreadable:
                self.counts.unreadable += 1
                log.warning(
                    "Feed entity cannot be read.", extra={"feed": self.name, "reason": what}
                )
            if not await self.inbox.advance_cursor(self.cursor_name, before, page.cursor):
                self.counts.lost_race += 1
                log.info("Another relay read this page first.", extra={"feed": self.name})
                break
            if not page.more:
                break
        return queued

    async def run(self, stop: asyncio.Event) -> None:
        await poll_forever(
            self.poll_once,
            stop,
            self.settings.interval_seconds,
            self.counts,
            failed="Feed poll failed.",
            extra={"feed": self.name},
            log=log,
        )


def build_feed(
    name: str,
    settings: FeedSettings,
    config: CentralConfig,
    client: httpx.AsyncClient,
    skus: SkuTable | None = None,
) -> Feed:
    """The reader for one configured feed, around the target's connector and `client`."""
    target = next(t for t in config.targets if t.name == settings.target)
    connector = CONNECTORS[target.type].factory(target, client)
    if settings.type == "commercetools":
        from ..connectors.commercetools.connector import CommercetoolsConnector
        from .commercetools import CommercetoolsFeed

        assert isinstance(connector, CommercetoolsConnector)
        sku_map = SkuMap(skus or SkuTable(), target, config.routing.sku_mode)
        return CommercetoolsFeed(
            name, settings, connector, sku_map, locale=getattr(target, "locale", "en")
        )
    if settings.type == "adobe_commerce":
        from ..connectors.adobe_commerce.connector import AdobeCommerceConnector
        from .adobe_commerce import AdobeCommerceFeed

        assert isinstance(connector, AdobeCommerceConnector)
        sku_map = SkuMap(skus or SkuTable(), target, config.routing.sku_mode)
        return AdobeCommerceFeed(name, settings, connector, sku_map)
    from ..connectors.salesforce.connector import SalesforceConnector
    from .salesforce import SalesforceFeed

    assert isinstance(connector, SalesforceConnector)
    return SalesforceFeed(name, settings, connector)


class Feeds:
    """Every enabled feed of the relay's config, each polled on its own, and the
    fan-out they share (which also answers the stores' resync requests and purges)."""

    def __init__(
        self,
        config: CentralConfig,
        inbox: ReferenceInbox,
        *,
        transport_for: TransportFactory | None = None,
    ) -> None:
        self.fanout = fanout_for(config, inbox)
        skus = load_sku_table(config.routing.sku_table) if config.routing.sku_table else None
        self._clients: list[httpx.AsyncClient] = []
        self.runners: list[FeedRunner] = []
        for name, settings in config.feeds.items():
            if not settings.enabled:
                continue
            target = next(t for t in config.targets if t.name == settings.target)
            client = target_client(target, transport_for)
            self._clients.append(client)
            feed = build_feed(name, settings, config, client, skus)
            self.runners.append(FeedRunner(name, settings, feed, inbox, self.fanout))

    async def poll_once(self, *, now: datetime | None = None) -> int:
        counts = await asyncio.gather(*(r.poll_once(now=now) for r in self.runners))
        return sum(counts)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(r.run(stop) for r in self.runners))

    async def aclose(self) -> None:
        for runner in self.runners:
            await runner.feed.aclose()
        for client in self._clients:
            await client.aclose()


def fanout_for(config: CentralConfig, inbox: ReferenceInbox) -> Fanout:
    """The fan-out of the relay's config: its stores' tables and each feed's customers_to."""
    return Fanout(inbox, config.stores, {name: f.customers_to for name, f in config.feeds.items()})
