"""The data behind each page and API answer, gathered once for both. Record bodies and
audit details are redacted: no card number, token or customer contact leaves here."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from central.exception_queue import GROUP_SCAN, describe, groups
from central.inbox import DownlinkSummary, ExceptionItem, Inbox, OrderDay
from central.recon import ReconDay, order_lines, reconcile_day
from common.redact import redact_value

from ._deps import AppState

__all__ = [
    "fleet",
    "order_table",
    "orders_json",
    "recon_day",
    "recon_days",
    "record_detail",
    "shown",
    "throughput_svg",
    "when",
]


def when(value: object) -> str:
    """An ISO time as the pages show it, with its zone: `2026-12-05 14:03:07 UTC`."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the inbox keeps UTC
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _downlink(summary: DownlinkSummary | None, now: datetime) -> dict[str, Any]:
    """A store's way down as the fleet shows it (zeros for a store with none)."""
    if summary is None:
        return {
            "pending": 0,
            "delivered": 0,
            "oldest_waiting": None,
            "waiting_seconds": None,
            "past_promise": 0,
        }
    oldest = summary.oldest_waiting
    return {
        "pending": summary.pending,
        "delivered": summary.delivered,
        "oldest_waiting": oldest.astimezone(UTC).isoformat() if oldest else None,
        "waiting_seconds": round((now - oldest).total_seconds()) if oldest else None,
        "past_promise": summary.past_promise,
    }


async def fleet(inbox: Inbox) -> list[dict[str, Any]]:
    """Each store as the fleet page and API show it: its stream up and its way down. A
    store with orders queued that has never reported is listed too, so that orders
    waiting for a store that never came up are seen."""
    now = datetime.now(UTC)
    down = {s.store: s for s in await inbox.downlink_summary(now=now)}
    shown = [
        {
            "store": s.store,
            "state": s.state,
            "last_seen": s.last_seen.isoformat(),
            "seen_seconds_ago": round((now - s.last_seen).total_seconds()),
            "backlog_rows": s.backlog_rows,
            "lag_seconds": s.oldest_unacked_seconds,
            "agent_version": s.agent_version,
            "records": s.records,
            "duplicates": s.duplicates,
            "missing": sum(g.to_seq - g.from_seq + 1 for g in s.gaps),
            "release": (
                {
                    "from_seq": s.last_release.from_seq,
                    "to_seq": s.last_release.to_seq,
                    "cause": s.last_release.cause,
                    "reason": s.last_release.reason,
                    "at": s.last_release.received_at.isoformat(),
                }
                if s.last_release is not None
                else None
            ),
            "downlink": _downlink(down.pop(s.store, None), now),
            # The store's own word (its heartbeat): held, not yet written to the POS.
            "orders_waiting": s.orders_waiting,
            "orders_alert": s.orders_alert,
        }
        for s in await inbox.stores()
    ]
    for store, summary in sorted(down.items()):
        shown.append(
            {
                "store": store,
                "state": "unknown",
                "last_seen": None,
                "seen_seconds_ago": None,
                "backlog_rows": None,
                "lag_seconds": None,
                "agent_version": None,
                "records": 0,
                "duplicates": 0,
                "missing": 0,
                "release": None,
                "downlink": _downlink(summary, now),
                "orders_waiting": None,
                "orders_alert": None,
            }
        )
    return shown


async def record_detail(inbox: Inbox, record_id: int) -> dict[str, Any] | None:
    found = await inbox.record(record_id)
    if found is None:
        return None
    found["body"] = redact_value(found["body"])
    found["deliveries"] = await inbox.deliveries_of(record_id)
    found["audit"] = [
        {
            "at": e.at.isoformat(),
            "step": e.step,
            "target": e.target,
            "status": e.status,
            "detail": redact_value(e.detail),
        }
        for e in await inbox.audit_trail(record_id)
    ]
    return found


async def exceptions(inbox: Inbox, *, closed: bool = False) -> list[dict[str, Any]]:
    return [shown(i) for i in await inbox.exceptions(500, include_closed=closed)]


def shown(item: ExceptionItem) -> dict[str, Any]:
    """An exception as a viewer sees it: the reason (which may quote a target's answer)
    and the resolution note redacted like a body."""
    found = describe(item)
    for name in ("reason", "resolution"):
        if isinstance(found[name], str):
            found[name] = redact_value(found[name])
    return found


async def exception_groups(inbox: Inbox) -> list[dict[str, Any]]:
    """Open exceptions counted by target and reason, largest group first."""
    return groups(await inbox.exceptions(GROUP_SCAN))


def _kinds(app: AppState) -> dict[str, list[str]]:
    return {t.name: list(t.kinds) for t in app.config.targets}


async def recon_day(app: AppState, store: str, day: date) -> list[ReconDay]:
    return await reconcile_day(
        app.inbox, store, day, _kinds(app), tolerance=app.config.recon.tolerance
    )


async def recon_days(app: AppState, limit: int = 60) -> list[dict[str, Any]]:
    out = []
    for store, day in await app.inbox.closed_days(limit):
        days = await recon_day(app, store, day)
        out.append(
            {
                "store": store,
                "business_date": day.isoformat(),
                "differences": sum(d.differences for d in days),
                "refused_open": sum(d.refused_open for d in days),
                "currencies": [d.currency for d in days],
            }
        )
    return out


_ORDER_LABELS = {
    "received": "received at central",
    "handed_to_store": "handed to the store (acknowledged by it)",
    "fulfilled": "fulfilled at the POS",
    "cancelled_online": "cancelled by the platform",
}


def order_table(orders: OrderDay) -> list[tuple[str, str, int]]:
    """The recon page's "Online orders" rows: (figure, label, count)."""
    return [
        (name, _ORDER_LABELS.get(name, f"fulfilled: {name.replace('_', ' ')}"), count)
        for name, count in order_lines(orders)
    ]


def orders_json(orders: OrderDay) -> dict[str, Any]:
    """A store's online orders of a day (the UTC day central first queued each)."""
    figures = dict(order_lines(orders))
    return {
        "store": orders.store,
        "day": orders.day.isoformat(),
        "received": orders.received,
        "handed_to_store": orders.handed,
        "fulfilled": orders.fulfilled_total,
        "by_status": {
            name: n
            for name, n in figures.items()
            if name not in ("received", "handed_to_store", "fulfilled", "cancelled_online")
        },
        "cancelled_online": orders.cancelled_online,
    }


def day_json(days: list[ReconDay]) -> list[dict[str, Any]]:
    def totals(t: Any) -> dict[str, Any] | None:
        return None if t is None else {"count": t.count, "amount": str(t.amount)}

    return [
        {
            "store": d.store,
            "business_date": d.business_date.isoformat(),
            "currency": d.currency,
            "revision": d.revision,
            "differences": d.differences,
            "refused_open": d.refused_open,
            "off_balance": d.off_balance,
            "lines": [
                {
                    "group": line.group,
                    "name": line.name,
                    "pos": totals(line.pos),
                    "received": totals(line.received),
                    "targets": {k: totals(v) for k, v in line.targets.items()},
                    "differs": line.differs,
                }
                for line in d.lines
            ],
        }
        for d in days
    ]


def throughput_svg(counts: list[int], *, width: int = 600, height: int = 120) -> str:
    """Records received per minute as an inline SVG bar chart (oldest left)."""
    peak = max([*counts, 1])
    bar = width / max(len(counts), 1)
    bars = []
    for i, n in enumerate(counts):
        h = round(n / peak * (height - 20), 1)
        bars.append(
            f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{max(bar - 1, 1):.1f}" '
            f'height="{h}"><title>{n} records</title></rect>'
        )
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="records per minute, last {len(counts)} minutes, peak {peak}">'
        f'<text x="4" y="12">peak {peak}/min</text>{"".join(bars)}</svg>'
    )
