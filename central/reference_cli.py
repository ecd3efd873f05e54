"""`tillbridge-central customers purge` and `tillbridge-central stores import|list`: the
privacy purge of one customer at every store, and the store cross-reference (each
store's ids across systems) loaded from CSV and shown.

The CSV's header names its columns (any order): `store` (the POS store id the agent runs
as) and any of `name`, `commercetools_store`, `commercetools_channel`, `customer_group`,
`currency`, `adobe_source`, `salesforce_location`, `oms_store`. A row replaces that
store's row whole; stores not in the file stay as they were. A store whose scope changed
is queued its new view of the reference data central holds.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from common.cli import config_option, group, load_or_exit

from .config import CentralConfig, load_central_config
from .inbox import XREF_COLUMNS, StoreXref, open_inbox

__all__ = ["customers_app", "read_xref", "stores_app"]

customers_app = group("Customers at the stores: purge one everywhere on request.")
stores_app = group("The store cross-reference: each store's ids across systems.")

ConfigOption = Annotated[Path, config_option("central")]

_STORE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def read_xref(text: str) -> list[StoreXref]:
    """The rows of a cross-reference CSV; ValueError naming the line that is wrong."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    if "store" not in header:
        raise ValueError("the first line must name the columns, one of them store")
    unknown = sorted(set(header) - set(XREF_COLUMNS))
    if unknown:
        raise ValueError(f"unknown column {unknown[0]} (known: {', '.join(XREF_COLUMNS)})")
    rows: list[StoreXref] = []
    seen: set[str] = set()
    for number, raw in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        store = row.get("store", "")
        if not _STORE.match(store):
            raise ValueError(f"line {number}: store {store!r} is not a store id")
        if store in seen:
            raise ValueError(f"line {number}: store {store} is named twice")
        currency = row.get("currency", "")
        if currency and not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValueError(f"line {number}: currency {currency!r} is not an ISO 4217 code")
        seen.add(store)
        rows.append(StoreXref(**{c: row.get(c, "") for c in XREF_COLUMNS}))
    return rows


@stores_app.command("import")
def stores_import(
    file: Annotated[Path, typer.Argument(help="CSV with a header line; see the README.")],
    config: ConfigOption,
) -> None:
    """Load store cross-reference rows from CSV (a row replaces that store's row)."""
    cfg = load_or_exit(load_central_config, config)
    try:
        rows = read_xref(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        typer.echo(f"{file}: {exc}", err=True)
        raise typer.Exit(2) from None
    count, queued = asyncio.run(_put(cfg, rows))
    typer.echo(f"{count} stores imported; {queued} reference messages queued for changed stores")


async def _put(cfg: CentralConfig, rows: Sequence[StoreXref]) -> tuple[int, int]:
    """Import the rows; a store whose scope changed (another price channel, source, home
    location) is queued its new view of every entity central holds that differs from
    what it was sent (the digests decide), so its data follows the sheet at once."""
    from contract import RefCustomer, RefItem, down_body_adapter

    from .feeds import fanout_for

    inbox = await open_inbox(cfg.inbox_url, relay_id=cfg.relay_id)
    try:
        fanout = fanout_for(cfg, inbox)
        before = await fanout.scopes()
        count = await inbox.put_xref(rows)
        after = await fanout.scopes()
        changed = {s: scope for s, scope in after.items() if before.get(s) != scope}
        queued = 0
        if changed:
            for row in await inbox.reference_rows():
                body = down_body_adapter.validate_json(row.body)
                if isinstance(body, RefCustomer | RefItem):
                    queued += await fanout.send(body, changed)
        return count, queued
    finally:
        await inbox.close()


@stores_app.command("list")
def stores_list(config: ConfigOption) -> None:
    """Print the cross-reference as CSV."""
    cfg = load_or_exit(load_central_config, config)
    rows = asyncio.run(_xref(cfg))
    out = csv.writer(typer.get_text_stream("stdout"), lineterminator="\n")
    out.writerow(XREF_COLUMNS)
    for row in rows:
        out.writerow([getattr(row, c) for c in XREF_COLUMNS])


async def _xref(cfg: CentralConfig) -> list[StoreXref]:
    inbox = await open_inbox(cfg.inbox_url, relay_id=cfg.relay_id)
    try:
        return await inbox.store_xref()
    finally:
        await inbox.close()


@customers_app.command("purge")
def customers_purge(
    customer_id: Annotated[str, typer.Argument(help="The CRM's id of the person.")],
    config: ConfigOption,
    source: Annotated[
        str | None,
        typer.Option(help="The feed that reads them; default the one salesforce feed."),
    ] = None,
) -> None:
    """Forget a customer at every store (a privacy request): a purge is queued to each
    store central knows and the customer leaves central's reference table. Delete or
    anonymise them in the CRM too, or the feed sends them again when they change."""
    cfg = load_or_exit(load_central_config, config)
    if source is None:
        names = [n for n, f in cfg.feeds.items() if f.type == "salesforce"]
        if len(names) != 1:
            typer.echo("name the customer feed with --source", err=True)
            raise typer.Exit(2)
        source = names[0]
    stores = asyncio.run(_purge(cfg, source, customer_id))
    typer.echo(f"purge of {customer_id} queued for {stores} stores")


async def _purge(cfg: CentralConfig, source: str, customer_id: str) -> int:
    from .feeds import fanout_for

    inbox = await open_inbox(cfg.inbox_url, relay_id=cfg.relay_id)
    try:
        return await fanout_for(cfg, inbox).purge(source, customer_id)
    finally:
        await inbox.close()
