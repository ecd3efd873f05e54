"""`tillbridge-agent verify`: what a field engineer runs on a new store's exports before
go-live. Per file: transactions by kind, refused transactions with place and reason, and
the transactions that do not balance, with by how much.

A transaction balances when its lines meet its total (`imbalance` 0) and its tenders, net
of change and cash back, meet it too (no `tender_imbalance` attribute).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from agent.parsers import Parsed, Skipped
from contract import Refused, Transaction, quantize_amount

__all__ = ["FileReport", "render", "report"]


@dataclasses.dataclass
class FileReport:
    """What verify found in one file."""

    file: str
    format: str = ""
    error: str = ""  # the file refused whole: not the format, truncated, unreadable
    kinds: Counter[str] = dataclasses.field(default_factory=Counter)
    skipped: Counter[str] = dataclasses.field(default_factory=Counter)
    refused: list[dict[str, str]] = dataclasses.field(default_factory=list)
    imbalances: list[dict[str, str]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every transaction read, and every one reconciles."""
        return not (self.error or self.refused or self.imbalances)

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "ok": self.ok,
            "error": self.error or None,
            "transactions": dict(sorted(self.kinds.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "refused": self.refused,
            "imbalances": self.imbalances,
        }


def report(file: str, fmt: str, items: Iterable[Parsed]) -> FileReport:
    """The report of one file's parsed items."""
    found = FileReport(file=file, format=fmt)
    for item in items:
        if isinstance(item, Skipped):
            found.skipped[item.reason] += 1
        elif isinstance(item, Refused):
            found.kinds["refused"] += 1
            found.refused.append(
                {
                    "transaction_id": item.transaction_id or "",
                    "place": item.place,
                    "reason": item.reason,
                }
            )
        elif isinstance(item, Transaction):
            found.kinds[item.kind] += 1
            tender_gap = item.attributes.get("tender_imbalance")
            if item.imbalance or tender_gap:
                found.imbalances.append(
                    {
                        "transaction_id": item.transaction_id,
                        "place": item.source.position,
                        "kind": item.kind,
                        "total": format(item.total, "f"),
                        "imbalance": format(item.imbalance, "f"),
                        "tender_imbalance": tender_gap
                        or format(quantize_amount(Decimal(0), item.currency), "f"),
                    }
                )
        else:
            found.kinds[item.kind] += 1
    return found


def render(found: FileReport) -> list[str]:
    """The report as lines of text for a terminal."""
    verdict = "ok" if found.ok else "NOT READY"
    lines = [f"{found.file}: {verdict}" + (f" ({found.format})" if found.format else "")]
    if found.error:
        lines.append(f"  refused whole: {found.error}")
        return lines
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(found.kinds.items()))
    lines.append(f"  transactions: {kinds or 'none'}")
    if found.skipped:
        counted = ", ".join(f"{why} {n}" for why, n in sorted(found.skipped.items()))
        lines.append(f"  counted, not forwarded: {counted}")
    if found.refused:
        lines.append(f"  refused transactions ({len(found.refused)}):")
        lines.append(f"    {'transaction':<12} {'place':<60} reason")
        for row in found.refused:
            lines.append(f"    {row['transaction_id']:<12} {row['place']:<60} {row['reason']}")
    if found.imbalances:
        lines.append(f"  not balanced ({len(found.imbalances)}):")
        lines.append(
            f"    {'transaction':<12} {'kind':<7} {'total':>12} {'lines off':>10} "
            f"{'tenders off':>11}  place"
        )
        for row in found.imbalances:
            lines.append(
                f"    {row['transaction_id']:<12} {row['kind']:<7} {row['total']:>12} "
                f"{row['imbalance']:>10} {row['tender_imbalance']:>11}  {row['place']}"
            )
    return lines
