"""Idempotency keys: deterministic from the POS's own identifiers.

The same POS transaction gives the same key whatever file, batch or agent it
came through, so central can insert-if-absent and targets can dedupe.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date

__all__ = ["inventory_key", "key_digest", "make_key"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _part(value: object) -> str:
    text = value.isoformat() if isinstance(value, date) else str(value)
    text = text.strip()
    if not text:
        raise ValueError("an idempotency key part may not be empty")
    # Percent-escape anything outside a small safe set, so ':' can separate parts
    # and the key survives URLs, topic names and order numbers unchanged.
    if _SAFE.search(text) is None:
        return text  # the common case, for every record
    return _SAFE.sub(_escape, text)


def _escape(unsafe: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in unsafe.group().encode())


def make_key(
    kind: str,
    store: str,
    register: str | None,
    business_date: date | str,
    transaction_id: str,
) -> str:
    """Key of a POS transaction: `kind:store:register:business_date:transaction_id`.

    Sequence numbers repeat across registers and business days, so all of them
    take part. A missing register is written `-`.
    """
    return ":".join(
        [
            _part(kind),
            _part(store),
            _part(register) if register not in (None, "") else "-",
            _part(business_date),
            _part(transaction_id),
        ]
    )


def inventory_key(store: str, location: str, sku: str, reference: str) -> str:
    """Key of one inventory level: `inventory:store:location:sku:reference`.

    `reference` is the POS's own id for the count or movement (document id,
    snapshot time), so re-reading the same export gives the same key.
    """
    return ":".join(["inventory", _part(store), _part(location), _part(sku), _part(reference)])


def key_digest(key: str, length: int = 32) -> str:
    """A fixed-length hex digest of a key, for targets that limit identifier length."""
    return hashlib.sha256(key.encode()).hexdigest()[:length]
