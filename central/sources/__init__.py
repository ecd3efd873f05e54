"""Order sources: online orders read from the commerce platforms the relay delivers to
(commercetools, Adobe Commerce), queued on the downlink of the store that hands them
over or ships them. One module per platform, registered by the `type` of
`[central.order_sources.NAME]`; `_runner` polls them."""

from __future__ import annotations

from ._base import Page, Platform, Refusal, SkuMap, SourceError, SourceInbox, StoreMap
from ._runner import REFUSAL_KIND, OrderSources, PollCounts, SourceRunner, build_platform
from ._settings import SOURCE_TYPES, OrderSourceSettings

__all__ = [
    "REFUSAL_KIND",
    "SOURCE_TYPES",
    "OrderSourceSettings",
    "OrderSources",
    "Page",
    "Platform",
    "PollCounts",
    "Refusal",
    "SkuMap",
    "SourceError",
    "SourceInbox",
    "SourceRunner",
    "StoreMap",
    "build_platform",
]
