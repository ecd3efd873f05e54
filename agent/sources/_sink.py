"""The seam between the folder watcher and the outbox.

The watcher finds a complete file and parses it lazily; the sink commits the
file's records and its "ingested" mark in one transaction. Only after `ingest`
returns does the watcher archive the file: a crash before that leaves the file
in the POS folder to be taken again, and the content hash keeps it from being
ingested twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Protocol

from agent.parsers import Parsed

__all__ = ["BudgetReached", "FileSink", "IngestFile", "IngestOutcome"]


@dataclasses.dataclass(frozen=True, slots=True)
class IngestFile:
    """A complete file ready to be ingested."""

    source: str  # the configured source's name
    path: str  # full path where the POS wrote it
    name: str  # file name only
    sha256: str
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class IngestOutcome:
    inserted: int  # records newly committed
    duplicates: int  # records whose key was already in the outbox
    skipped: int  # training / control / suspended transactions counted, not forwarded
    already_ingested: bool = False  # the same content hash was ingested before


class BudgetReached(Exception):
    """The sink is at its budget: the file waits in its folder and is taken once there is
    room. Nothing is wrong with the file. It needs room for at least `records` records of
    `size` bytes."""

    def __init__(self, reason: str, records: int = 0, size: int = 0) -> None:
        super().__init__(reason)
        self.records = records
        self.size = size


class FileSink(Protocol):
    """Where a parsed file's records go. The outbox implements it."""

    async def is_ingested(self, sha256: str) -> bool:
        """True when a file with this content hash was committed before."""
        ...

    async def ingest(self, file: IngestFile, items: Iterator[Parsed]) -> IngestOutcome:
        """Commit every record of `items` and the file's mark in one transaction.

        `items` is a lazy parser iterator that may raise `ParseError` part-way; then
        nothing of the file is committed and the error propagates. Iterating it is
        CPU-bound: the sink consumes it off the event loop.
        """
        ...

    def accepting(self) -> bool:
        """False while a budget limit (bytes, rows, age, free disk) is reached."""
        ...
