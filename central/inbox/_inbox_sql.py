"""The whole inbox both backends implement: the records role (`_sql`), delivery
(`_deliveries`), the exception queue (`_exceptions_sql`), what people read
(`_views_sql`), the way down (`_downlink_sql`) and reference data
(`_reference_sql`), joined over one dialect."""

from __future__ import annotations

from typing import Any

from ._deliveries import DeliveriesSql
from ._downlink_sql import DownlinkSql
from ._exceptions_sql import ExceptionsSql
from ._reference_sql import ReferenceSql
from ._views_sql import ViewsSql

__all__ = ["InboxSql"]


class InboxSql(DeliveriesSql, ExceptionsSql, ViewsSql, DownlinkSql, ReferenceSql):
    """Every role of the inbox over one SQL dialect; a backend adds its connections."""

    async def stats(self) -> dict[str, Any]:
        base = await super().stats()
        base["deliveries"] = await self.delivery_stats()
        base["downlink"] = await self.downlink_stats()
        base["reference"] = await self.reference_counts()
        return base
