"""The `micros_csv` writer: item prices as MICROS menu item price records (CSV).

The layout is the MICROS Standard Export "Menu Item Price Record" (Oracle MICROS,
docs.oracle.com/cd/E66143_01/doc.850/e70169/c_standardexport_reference_mnpr.htm):
record type `MNPR`, revenue center number, menu item number, price level, level name,
price, cost, effective from (`YYYYMMDDHHMMSS`). One record per price that applies to
every customer at this store (a price for one customer group has no MICROS price level
here and is left to the lookup); the menu item number is the POS item id, which MICROS
keeps numeric, so an item with another id is logged and left out of the file (it is
still in the reference store). An inactive item gets no record: the POS keeps its last
price until someone retires the item there.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from agent.config import ReferenceSettings
from contract import CustomerPurge, RefItem

from ._atomic import write_new
from ._reference import RefBatch, batch_name

__all__ = ["COLUMNS", "MicrosCsvWriter"]

log = logging.getLogger("tillbridge.agent.writers")

PREFIX = "menuitemprices"
COLUMNS = (
    "Record Type",
    "Revenue Center Number",
    "Menu Item Number",
    "Price Level",
    "Level Name",
    "Price",
    "Cost",
    "Effective From",
)


class MicrosCsvWriter:
    name = "micros_csv"
    kinds = frozenset({"item"})

    def __init__(self, folder: Path, revenue_center: int, price_level: int) -> None:
        self.folder = folder
        self.revenue_center = revenue_center
        self.price_level = price_level

    @classmethod
    def from_settings(cls, settings: ReferenceSettings) -> MicrosCsvWriter:
        assert settings.folder is not None  # the config refuses a writer without a folder
        return cls(settings.folder, settings.revenue_center, settings.price_level)

    async def write(self, batch: RefBatch) -> str | None:
        rows: list[list[str]] = []
        for seq, body in batch.entries:
            if isinstance(body, RefItem):
                rows.extend(self._records(seq, body, batch))
        if not rows:
            return None
        name = batch_name(PREFIX, batch, ".csv")
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        await asyncio.to_thread(write_new, self.folder, name, out.getvalue().encode("utf-8"))
        return name

    def _records(self, seq: int, item: RefItem, batch: RefBatch) -> list[list[str]]:
        if not item.sku.isdigit():
            log.warning(
                "Item left out of the MICROS price file: its POS item id is not a menu item "
                "number.",
                extra={"seq": seq, "sku": item.sku},
            )
            return []
        if not item.active:
            return []
        return [
            [
                "MNPR",
                str(self.revenue_center),
                item.sku,
                str(self.price_level),
                "",
                f"{price.amount:.2f}",
                "",
                _stamp(price.valid_from or item.changed_at, batch),
            ]
            for price in item.prices
            if price.customer_group is None
        ]

    async def forget(self, purges: Sequence[CustomerPurge]) -> int:
        return 0  # no customers in these files


def _stamp(at: datetime, batch: RefBatch) -> str:
    return at.astimezone(batch.zone).strftime("%Y%m%d%H%M%S")
