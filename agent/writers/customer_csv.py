"""The `customer_csv` writer: customers as a POS customer import CSV in the import folder.

One row per customer with an action column, as POS import layouts do (InfoGenesis's
item import: `U` adds or updates by id; our purge is `D`, delete by id, carrying no
other field). A header row names the columns; UTF-8, CRLF line ends (RFC 4180).
A purge also removes the customer from files the POS has not taken yet.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path

from agent.config import ReferenceSettings
from contract import CustomerPurge, RefCustomer

from ._atomic import replace_file, write_new
from ._base import WriteError
from ._reference import RefBatch, batch_name

__all__ = ["COLUMNS", "CustomerCsvWriter"]

log = logging.getLogger("tillbridge.agent.writers")

PREFIX = "customers"
COLUMNS = (
    "action",
    "source",
    "customer_id",
    "pos_customer_id",
    "loyalty_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "tier",
    "points",
    "home_store",
    "preferences",
    "changed_at",
)


class CustomerCsvWriter:
    name = "customer_csv"
    kinds = frozenset({"customer", "customer_purge"})

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def from_settings(cls, settings: ReferenceSettings) -> CustomerCsvWriter:
        assert settings.folder is not None  # the config refuses a writer without a folder
        return cls(settings.folder)

    async def write(self, batch: RefBatch) -> str | None:
        rows = [_row(body) for _, body in batch.entries if body.kind in self.kinds]
        if not rows:
            return None
        name = batch_name(PREFIX, batch, ".csv")
        await asyncio.to_thread(write_new, self.folder, name, _render(rows))
        return name

    async def forget(self, purges: Sequence[CustomerPurge]) -> int:
        return await asyncio.to_thread(self._forget, {(p.source, p.customer_id) for p in purges})

    def _forget(self, gone: set[tuple[str, str]]) -> int:
        changed = 0
        try:
            files = sorted(self.folder.glob(f"{PREFIX}_*.csv"))
        except OSError as exc:
            raise WriteError(f"cannot list {self.folder}: {exc}") from None
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue  # the POS took it meanwhile
            except OSError as exc:
                raise WriteError(f"cannot read {path.name} to purge a customer: {exc}") from None
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
            kept = [
                r for r in rows if (r["source"], r["customer_id"]) not in gone or r["action"] == "D"
            ]
            if len(kept) == len(rows):
                continue
            try:
                replace_file(path, _render(kept) if kept else None)
            except OSError as exc:
                raise WriteError(f"cannot rewrite {path.name} to purge a customer: {exc}") from None
            changed += 1
        return changed


def _row(body: object) -> dict[str, str]:
    if isinstance(body, CustomerPurge):
        return {"action": "D", "source": body.source, "customer_id": body.customer_id}
    assert isinstance(body, RefCustomer)
    return {
        "action": "U",
        "source": body.source,
        "customer_id": body.customer_id,
        "pos_customer_id": body.pos_customer_id or "",
        "loyalty_id": body.loyalty_id or "",
        "first_name": body.first_name or "",
        "last_name": body.last_name or "",
        "email": body.email or "",
        "phone": body.phone or "",
        "tier": body.tier or "",
        "points": "" if body.points is None else str(body.points),
        "home_store": body.home_store or "",
        "preferences": ";".join(f"{k}={v}" for k, v in sorted(body.preferences.items())),
        "changed_at": body.changed_at.isoformat(),
    }


def _render(rows: Sequence[dict[str, str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\r\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")
