"""Canonical records, wire batches and MQTT helpers for relay tests and benchmarks."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from contract import AgentInfo, Batch, WireRecord, encode_batch, make_key

__all__ = ["batch", "deadline", "return_body", "sale_body", "sales_batch", "wait_for", "wire"]

DAY = "2024-05-01"
WHEN = "2024-05-01T10:15:00+02:00"


def sale_body(store: str, txn: str, *, register: str = "1", total: str = "10.00") -> dict[str, Any]:
    """A valid sale as the agent sends it."""
    return {
        "kind": "sale",
        "key": make_key("sale", store, register, DAY, txn),
        "store": store,
        "business_date": DAY,
        "occurred_at": WHEN,
        "source": {"file": f"poslog_{txn}.xml", "position": "1"},
        "register": register,
        "transaction_id": txn,
        "currency": "EUR",
        "total": total,
        "lines": [{"number": "1", "sku": "SKU-1", "amount": total}],
        "tenders": [{"type": "cash", "amount": total}],
    }


def return_body(store: str, txn: str, original: str, *, register: str = "1") -> dict[str, Any]:
    """A return linked to the sale `original` (same register and day)."""
    body = sale_body(store, txn, register=register, total="-10.00")
    body["kind"] = "return"
    body["key"] = make_key("return", store, register, DAY, txn)
    body["links"] = [{"transaction_id": original, "register": register, "business_date": DAY}]
    return body


def wire(seq: int, body: dict[str, Any]) -> WireRecord:
    return WireRecord(
        kind=str(body.get("kind", "sale")),
        seq=seq,
        key=str(body.get("key") or f"k-{seq}"),
        correlation_id=uuid.uuid4().hex,
        occurred_at=datetime.fromisoformat(WHEN),
        source={"file": "poslog.xml", "position": str(seq)},
        body=body,
    )


def batch(store: str, records: list[WireRecord], *, batch_id: str | None = None) -> Batch:
    return Batch(
        store=store,
        agent=AgentInfo(id=f"agent-{store}", version="0.1.0"),
        batch_id=batch_id or uuid.uuid4().hex,
        sent_at=datetime.now(UTC),
        records=records,
    )


def sales_batch(store: str, seqs: range | list[int]) -> bytes:
    """An encoded batch of one valid sale per seq."""
    return encode_batch(batch(store, [wire(s, sale_body(store, f"T{s}")) for s in seqs]))


def deadline(seconds: float) -> float:
    return time.monotonic() + seconds


async def wait_for(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 15.0, interval: float = 0.05
) -> Any:
    """Poll `check` until it returns something truthy; fail with the last value at the deadline."""
    end = deadline(timeout)
    value = None
    while time.monotonic() < end:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
