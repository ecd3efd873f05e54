"""Reference feeds: customers from Salesforce, items and prices from commercetools, read
by a durable cursor as deltas, kept as each entity's latest state and fanned out on the
downlink to the stores they concern. One module per platform, registered by the `type`
of `[central.feeds.NAME]`; `_runner` polls them, `_fanout` decides which store gets what
(and answers a store's resync, and purges a customer everywhere)."""

from __future__ import annotations

from ._base import Feed, FeedError, FeedPage, Withdrawn
from ._fanout import PURGED, Fanout, ReferenceInbox, StoreScope, digest_of, scopes_of
from ._runner import FeedCounts, FeedRunner, Feeds, build_feed, fanout_for
from ._settings import FEED_TYPES, FeedSettings

__all__ = [
    "FEED_TYPES",
    "PURGED",
    "Fanout",
    "Feed",
    "FeedCounts",
    "FeedError",
    "FeedPage",
    "FeedRunner",
    "FeedSettings",
    "Feeds",
    "ReferenceInbox",
    "StoreScope",
    "Withdrawn",
    "build_feed",
    "digest_of",
    "fanout_for",
    "scopes_of",
]
