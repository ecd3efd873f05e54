"""The demo's sandbox shop: it takes online orders for a store (pickup, two or three
lines of what the tills sell) and queues each at central the way an order source does
once it has read an order from its platform: an `OnlineOrder` through the inbox's
`Downlink.enqueue`, keyed by `order_key`, so queueing one twice queues it once.

It stands in for the platform's side only: the orders carry commercetools' shape
(`source`) and name the demo's dry-run target, where their fulfilment is posted. Nothing
here reaches a network.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from central.inbox import open_inbox
from contract import OnlineOrder, order_key

from .pos import CENT, ITEMS

__all__ = ["SandboxShop"]

VAT = Decimal("0.19")
"""The German standard rate; order prices include it, as the demo's tills' do."""


class SandboxShop:
    """Places orders for `store` and queues them in the relay's inbox at `inbox_url`.
    An order placed while the inbox cannot be opened (the relay still starting) waits
    and is queued on a later call under the same number."""

    def __init__(self, inbox_url: str, store: str, target: str, *, name: str = "sandbox") -> None:
        self.inbox_url = inbox_url
        self.store = store
        self.target = target
        self.name = name
        self.placed: list[str] = []
        """Order numbers, in the order placed."""
        self.queued: set[str] = set()
        self.error: str | None = None
        """Why the last call could not queue, if it could not."""
        self._waiting: list[OnlineOrder] = []

    def place(self, *, now: datetime | None = None) -> str:
        """One new pickup order for the store; returns its number."""
        moment = now or datetime.now(UTC)
        n = len(self.placed) + 1
        number = f"SBX-{self.store}-{n:05d}"
        count = 2 + n % 2
        lines = []
        for i in range(count):
            sku, _, price = ITEMS[(n + i) % len(ITEMS)]
            quantity = Decimal(1 + (n + i) % 2)
            lines.append(
                {
                    "line_id": f"{number}-{i + 1}",
                    "sku": sku,
                    "quantity": str(quantity),
                    "unit_price": str(price),
                    "amount": str((price * quantity).quantize(CENT)),
                }
            )
        total = sum((Decimal(str(line["amount"])) for line in lines), Decimal(0))
        order = OnlineOrder.model_validate(
            {
                "source": "commercetools",
                "target": self.target,
                "order_id": f"{self.name}-{n}",
                "order_number": number,
                "version": 1,
                "store": self.store,
                "fulfilment": "pickup",
                "created_at": moment,
                "promised_by": moment + timedelta(hours=2),
                "currency": "EUR",
                "taxed": "included",
                "lines": lines,
                "tax_total": str((total * VAT / (1 + VAT)).quantize(CENT)),
                "total": str(total),
                "customer_name": "Sandbox customer",
            }
        )
        self._waiting.append(order)
        self.placed.append(number)
        return number

    def queue(self) -> int:
        """Queue every order placed and not yet queued; returns how many it handed to the
        inbox (one the inbox holds already under its key stays there once)."""
        if not self._waiting:
            return 0
        file = self.inbox_url.removeprefix("sqlite:///")
        if file != self.inbox_url and not Path(file).exists():
            self.error = "the relay has not opened its inbox yet"
            return 0  # the relay creates it; two first openers would race to migrate
        try:
            done = asyncio.run(self._queue())
        except Exception as exc:  # noqa: BLE001 - the inbox may be busy; the next call
            self.error = f"{type(exc).__name__}: {exc}"
            return 0
        self.error = None
        return done

    async def _queue(self) -> int:
        inbox = await open_inbox(self.inbox_url, relay_id=f"{self.name}-shop")
        done = 0
        try:
            while self._waiting:
                order = self._waiting[0]
                body = order.model_dump_json()
                await inbox.enqueue(order.store, order.kind, order_key(order), body)
                self.queued.add(order.order_number)
                self._waiting.pop(0)
                done += 1
        finally:
            await inbox.close()
        return done
