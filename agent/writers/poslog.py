"""The `poslog` reference writer: items as POSLog-style item maintenance XML.

The document is an ARTS POSLog (namespace `http://www.nrf-arts.org/IXRetail/namespace/`,
as NCR's and other POS exports write it) holding one transaction with an
`ItemMaintenance` block per item: its POS item id, the commerce SKU as POS identity, the
description, active status, attributes and each price with currency, channel, customer
group and validity. The element names of the item block follow ARTS naming
(`ItemID`, `Description`, `RegularSalesUnitPrice`); a POS that imports a stricter
profile needs a mapping of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from agent.config import ReferenceSettings
from contract import CustomerPurge, RefItem

from ._atomic import write_new
from ._reference import RefBatch, batch_name

__all__ = ["NAMESPACE", "PoslogItemWriter"]

NAMESPACE = "http://www.nrf-arts.org/IXRetail/namespace/"
PREFIX = "itemmaintenance"


class PoslogItemWriter:
    name = "poslog"
    kinds = frozenset({"item"})

    def __init__(self, folder: Path, store: str) -> None:
        self.folder = folder
        self.store = store

    @classmethod
    def from_settings(cls, settings: ReferenceSettings, store: str) -> PoslogItemWriter:
        assert settings.folder is not None  # the config refuses a writer without a folder
        return cls(settings.folder, store)

    async def write(self, batch: RefBatch) -> str | None:
        items = [(seq, body) for seq, body in batch.entries if isinstance(body, RefItem)]
        if not items:
            return None
        name = batch_name(PREFIX, batch, ".xml")
        await asyncio.to_thread(write_new, self.folder, name, self.render(items))
        return name

    def render(self, items: Sequence[tuple[int, RefItem]]) -> bytes:
        ET.register_namespace("", NAMESPACE)

        def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
            element = ET.SubElement(parent, f"{{{NAMESPACE}}}{tag}", attrs)
            if text is not None:
                element.text = text
            return element

        root = ET.Element(f"{{{NAMESPACE}}}POSLog")
        transaction = sub(root, "Transaction")
        sub(transaction, "RetailStoreID", self.store)
        sub(transaction, "SequenceNumber", str(items[-1][0]))
        maintenance = sub(transaction, "ItemMaintenance")
        for seq, item in items:
            entry = sub(maintenance, "Item", Action="AddUpdate", SequenceNumber=str(seq))
            sub(entry, "ItemID", item.sku)
            identity = sub(entry, "POSIdentity")
            sub(identity, "POSItemID", item.commerce_sku)
            sub(entry, "Description", item.name)
            sub(entry, "Status", "Active" if item.active else "Inactive")
            for price in item.prices:
                attrs = {"Currency": price.currency}
                if price.channel:
                    attrs["Channel"] = price.channel
                if price.customer_group:
                    attrs["CustomerGroup"] = price.customer_group
                element = sub(entry, "RegularSalesUnitPrice", f"{price.amount:.2f}", **attrs)
                if price.valid_from:
                    element.set("EffectiveDateTime", price.valid_from.isoformat())
                if price.valid_until:
                    element.set("ExpirationDateTime", price.valid_until.isoformat())
            for key, value in sorted(item.attributes.items()):
                sub(entry, "ItemAttribute", value, Name=key)
        ET.indent(root)
        data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        return data + b"\n"

    async def forget(self, purges: Sequence[CustomerPurge]) -> int:
        return 0  # no customers in these files
