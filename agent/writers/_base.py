"""What every writer shares: the message it is given and the one error it raises.

A writer says what happened and nothing more (like a connector): it never sleeps,
retries or keeps anything. The downlink's writer loop owns the order, the retries and
the alert.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Protocol

from contract import OnlineOrder, OrderCancel

__all__ = ["DownItem", "WriteError", "Writer"]


@dataclasses.dataclass(frozen=True, slots=True)
class DownItem:
    """One message from central, committed at the store, to hand to the POS."""

    seq: int
    key: str
    body: OnlineOrder | OrderCancel
    issued_at: datetime | None = None
    """When central queued it."""
    prior: str | None = None
    """For a cancellation: where its order was written (the file name, the check ref)."""


class WriteError(Exception):
    """The POS did not take the message. `permanent` when sending the same again will not
    help until someone changes something (an unknown item, a refused check); it is still
    retried, only at the longest delay, and never dropped."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Writer(Protocol):
    """Hands one message to the POS; returns where it went (a file name, a check ref).
    Writing what is already there must succeed without making a second one."""

    name: str

    async def write(self, item: DownItem) -> str: ...
