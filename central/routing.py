"""Routing: which targets take a record, and everything a target needs to know about it
that the POS does not say — the store's channel, source or location, the commerce SKU
of each POS item, the payment method of each tender type, the tax code.

Nothing is guessed: a record that cannot be routed completely gets one exact reason
and goes to the exception queue; it is sent again once the mapping is fixed.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from common.redact import redact_value
from common.settings import ConfigError, Section
from contract import (
    Fulfillment,
    Inventory,
    OnlineOrder,
    Record,
    Refused,
    Transaction,
    record_adapter,
)

from .connectors import CONNECTORS, TargetSettings
from .inbox import RouteDecision, StoreXref

__all__ = [
    "Router",
    "RoutingSettings",
    "SkuTable",
    "StoreRoute",
    "load_sku_table",
    "stores_with_xref",
]

XREF_ROUTE = {
    "commercetools_store": ("commercetools", "store"),
    "commercetools_channel": ("commercetools", "distribution_channel"),
    "adobe_source": ("adobe_commerce", "source_code"),
    "salesforce_location": ("salesforce", "location"),
}
"""Store cross-reference column → the target type and route key it fills."""


class StoreRoute(Section):
    """One `[central.stores."ID"]` table: store-wide facts, then one table per target.

    A target's table is looked up by the target's name first, then by its type, so
    two commercetools projects can route the same store differently.
    """

    model_config = ConfigDict(extra="allow")

    country: str = Field(default="", pattern=r"^([A-Z]{2})?$", description="ISO country code.")
    currency: str = Field(default="", pattern=r"^([A-Z]{3})?$", description="ISO currency.")
    tax_mode: Literal["included", "excluded"] = Field(
        default="included", description="Whether the store's prices include tax."
    )

    @property
    def tables(self) -> dict[str, dict[str, str]]:
        return {k: v for k, v in (self.model_extra or {}).items() if isinstance(v, dict)}


class RoutingSettings(Section):
    """`[central.routing]`: SKU, tender and tax mappings."""

    sku_mode: Literal["direct", "table"] = Field(
        default="direct",
        description="direct: the POS item id is the commerce SKU unless the table says "
        "otherwise; table: every SKU must be in the table.",
    )
    sku_table: Path | None = Field(
        default=None,
        description="CSV with columns pos_sku,sku and optionally target (a target name or "
        "type) for per-target SKUs.",
    )
    payments: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Per target name or type: POS tender type (cash, card, gift_card, "
        "voucher, loyalty, other) → the target's payment method.",
    )
    tax_codes: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Per target name or type: POS tax code → the target's tax code or "
        "category. Without a table a target gets the POS codes unchanged.",
    )

    @field_validator("payments", "tax_codes")
    @classmethod
    def _non_empty(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for target, table in value.items():
            for pos, mapped in table.items():
                if not str(mapped).strip():
                    raise ValueError(f"{target}.{pos} maps to an empty value")
        return value


@dataclass
class SkuTable:
    """POS item id → commerce SKU, shared or per target."""

    shared: dict[str, str] = field(default_factory=dict)
    by_target: dict[str, dict[str, str]] = field(default_factory=dict)

    def lookup(self, pos_sku: str, target: TargetSettings) -> str | None:
        for scope in (target.name, target.type):
            found = self.by_target.get(scope, {}).get(pos_sku)
            if found:
                return found
        return self.shared.get(pos_sku)


def load_sku_table(path: Path, config_file: Path | None = None) -> SkuTable:
    """Read the SKU CSV; a bad file is a ConfigError naming the file and row."""
    where = f"{config_file}: central.routing.sku_table" if config_file else str(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read {path}: {exc.strerror}"]) from None
    table = SkuTable()
    with handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        if not {"pos_sku", "sku"} <= columns:
            raise ConfigError(
                [f"{where}: {path} needs the columns pos_sku,sku (has {sorted(columns)})"]
            )
        for number, row in enumerate(reader, start=2):
            pos, sku = (row.get("pos_sku") or "").strip(), (row.get("sku") or "").strip()
            if not pos or not sku:
                raise ConfigError([f"{where}: {path} row {number}: pos_sku and sku are required"])
            scope = (row.get("target") or "").strip()
            bucket = table.by_target.setdefault(scope, {}) if scope else table.shared
            if bucket.get(pos, sku) != sku:
                raise ConfigError([f"{where}: {path} row {number}: {pos} is mapped twice"])
            bucket[pos] = sku
    return table


class Unroutable(Exception):
    """The exact reason a record cannot go to a target."""


def stores_with_xref(
    stores: Mapping[str, StoreRoute],
    targets: Sequence[TargetSettings],
    xref: Sequence[StoreXref],
) -> dict[str, StoreRoute]:
    """The config's store tables with the cross-reference laid over them: a store's
    imported ids win where the sheet names them (its commercetools store and channel,
    Adobe source, Salesforce location, currency), the config's tables fill the rest, and
    a store only the sheet knows starts from the `default` table."""
    merged = dict(stores)
    for row in xref:
        base = stores.get(row.store) or stores.get("default") or StoreRoute()
        data = base.model_dump()
        for column, (kind, key) in XREF_ROUTE.items():
            value = getattr(row, column)
            if not value:
                continue
            # The table a target of that type reads: its name's if the config has one.
            names = [t.name for t in targets if t.type == kind and t.name in data] or [kind]
            for name in names:
                data[name] = {**(data.get(name) or {}), key: value}
        if row.currency:
            data["currency"] = row.currency
        merged[row.store] = StoreRoute.model_validate(data)
    return merged


class Router:
    """Decides, per record, the targets and each target's resolved route."""

    def __init__(
        self,
        targets: Sequence[TargetSettings],
        stores: Mapping[str, StoreRoute],
        routing: RoutingSettings,
        skus: SkuTable | None = None,
    ) -> None:
        self._targets = list(targets)
        self._stores = stores
        self._routing = routing
        self._skus = skus or SkuTable()

    def decide(
        self,
        record_id: int,
        body: dict[str, Any],
        record: Record | None = None,
        *,
        order: OnlineOrder | None = None,
    ) -> RouteDecision:
        """`record` is `body` validated, when the caller has it already. A fulfilment
        goes with `order`, the online order central sent the store under its number
        (`Downlink.down_order`), and only to the target that order came from."""
        if record is None:
            record = record_adapter.validate_python(body)
        subject = None
        if isinstance(record, Inventory):
            subject = f"{record.store}|{record.location}|{record.sku}"
        snapshot = {"record": redact_value(body)}
        if isinstance(record, Refused):
            # A POS transaction the store could not read: money that must not go missing
            # silently. A person reads the reason and the fragment, fixes the export or the
            # agent, and the store reads it again under the same key.
            where = f"{record.format}, {record.place}" + (
                f", transaction {record.transaction_id}" if record.transaction_id else ""
            )
            return RouteDecision(
                record_id,
                error=f"the store could not read this POS transaction ({where}): {record.reason}",
                snapshot=snapshot,
            )
        if isinstance(record, Fulfillment):
            return self._fulfilment(record_id, record, order, snapshot)
        targets = [t for t in self._targets if record.kind in t.kinds]
        if not targets:
            return RouteDecision(record_id, snapshot=snapshot | {"targets": []}, subject=subject)
        store = self._stores.get(record.store) or self._stores.get("default")
        if store is None:
            return RouteDecision(
                record_id,
                error=f'store {record.store} has no routing: add [central.stores."{record.store}"]',
                snapshot=snapshot,
            )
        routes: dict[str, dict[str, Any]] = {}
        for target in targets:
            try:
                routes[target.name] = self._route(record, store, target)
            except Unroutable as exc:
                return RouteDecision(record_id, error=f"{target.name}: {exc}", snapshot=snapshot)
        return RouteDecision(
            record_id,
            routes=routes,
            snapshot=snapshot | {"routes": routes},
            subject=subject,
        )

    def _fulfilment(
        self,
        record_id: int,
        record: Fulfillment,
        order: OnlineOrder | None,
        snapshot: dict[str, Any],
    ) -> RouteDecision:
        """The one route of a fulfilment: the target its order came from, with the order's
        ids, and `skus` mapping each POS item the store names without a line id to the
        order's line (the platform's line id)."""
        number = record.order_number
        if order is None:
            return RouteDecision(
                record_id,
                error=f"order {number} is not an online order central sent store "
                f"{record.store}: there is no order to post this {record.status} to",
                snapshot=snapshot,
            )
        target = next((t for t in self._targets if t.name == order.target), None)
        if target is None:
            reason = f"order {number} came from target {order.target}, which is not configured"
            return RouteDecision(record_id, error=reason, snapshot=snapshot)
        if record.kind not in target.kinds:
            return RouteDecision(
                record_id,
                error=f'target {target.name} does not take fulfillment records: add "fulfillment" '
                "to its kinds",
                snapshot=snapshot,
            )
        on_order = {line.line_id for line in order.lines}
        lines: dict[str, str] = {}
        for line in record.lines:
            if line.line_id:
                if line.line_id not in on_order:
                    reason = f"line {line.line_id} is not on order {number}"
                    return RouteDecision(record_id, error=reason, snapshot=snapshot)
                continue
            found = [o.line_id for o in order.lines if o.sku == line.sku]
            if len(found) != 1:
                reason = (
                    f"SKU {line.sku} is not on order {number}"
                    if not found
                    else f"SKU {line.sku} is on {len(found)} lines of order {number}: the "
                    "store must name the line_id"
                )
                return RouteDecision(record_id, error=reason, snapshot=snapshot)
            lines[line.sku] = found[0]
        store = self._stores.get(record.store) or self._stores.get("default")
        tables = store.tables if store is not None else {}
        table = tables.get(target.name) or tables.get(target.type) or {}
        route = {
            **{k: str(v) for k, v in table.items()},
            "order_id": order.order_id,
            "order_number": order.order_number,
            "order_source": order.source,
            "fulfilment": order.fulfilment,
        }
        routes = {target.name: {"route": route, "skus": lines, "payments": {}, "tax_codes": {}}}
        return RouteDecision(record_id, routes=routes, snapshot=snapshot | {"routes": routes})

    def _route(self, record: Record, store: StoreRoute, target: TargetSettings) -> dict[str, Any]:
        kind = target.type
        tables = store.tables
        table = tables.get(target.name) or tables.get(kind) or {}
        required = (*CONNECTORS[kind].required_route, *target.route_fields)
        missing = [k for k in required if not str(table.get(k, "")).strip()]
        if missing:
            keys = ", ".join(f"{kind}.{k}" for k in missing)
            raise Unroutable(f"store {record.store} has no {keys} in [central.stores]")
        currency = getattr(record, "currency", None)
        if store.currency and currency and currency != store.currency:
            raise Unroutable(
                f"record is in {currency} but store {record.store} is routed in {store.currency}"
            )
        route = {
            **{k: str(v) for k, v in table.items()},
            "country": store.country,
            "currency": store.currency or (currency or ""),
            "tax_mode": store.tax_mode,
        }
        return {
            "route": route,
            "skus": self._skus_for(record, target),
            "payments": self._payments_for(record, target),
            "tax_codes": self._taxes_for(record, target),
        }

    def _skus_for(self, record: Record, target: TargetSettings) -> dict[str, str]:
        wanted: list[tuple[str, str]] = []
        if isinstance(record, Inventory):
            wanted.append((record.sku, "the inventory level"))
        elif isinstance(record, Transaction):
            wanted += [(line.sku, f"line {line.number}") for line in record.lines if line.sku]
        out: dict[str, str] = {}
        for pos_sku, where in wanted:
            mapped = self._skus.lookup(pos_sku, target)
            if mapped is None and self._routing.sku_mode == "direct":
                mapped = pos_sku
            if mapped is None:
                raise Unroutable(f"SKU {pos_sku} ({where}) has no mapping in the SKU table")
            out[pos_sku] = mapped
        return out

    def _mapping(
        self, table: dict[str, dict[str, str]], target: TargetSettings
    ) -> dict[str, str] | None:
        return table.get(target.name) or table.get(target.type)

    def _payments_for(self, record: Record, target: TargetSettings) -> dict[str, str]:
        if not isinstance(record, Transaction) or not record.tenders:
            return {}
        table = self._mapping(self._routing.payments, target)
        out: dict[str, str] = {}
        for tender in record.tenders:
            kind = tender.type.value
            if table is None:
                if not target.maps_required:
                    out[kind] = kind
                    continue
                raise Unroutable(
                    f"tender type {kind} has no payment method: add "
                    f"[central.routing.payments.{target.name}]"
                )
            if kind not in table:
                raise Unroutable(
                    f"tender type {kind} has no payment method in "
                    f"central.routing.payments for {target.name}"
                )
            out[kind] = table[kind]
        return out

    def _taxes_for(self, record: Record, target: TargetSettings) -> dict[str, str]:
        if not isinstance(record, Transaction):
            return {}
        codes = {t.code for t in record.taxes} | {
            t.code for line in record.lines for t in line.taxes
        }
        table = self._mapping(self._routing.tax_codes, target)
        if table is None:
            return {code: code for code in codes}
        unmapped = sorted(codes - table.keys())
        if unmapped:
            raise Unroutable(f"tax code {', '.join(unmapped)} has no mapping for {target.name}")
        return {code: table[code] for code in codes}
