"""Records validated once: intake validates every body it takes and keeps the result
here by key, and routing and every target's delivery take it from here rather than
validating the stored body again. Bounded (the records just taken, which routing reaches
first); a record not here (taken by another relay, or before a restart) is validated
from its stored body once and kept for the targets after it."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from contract import Record, record_adapter

__all__ = ["Validated"]


class Validated:
    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.validations = 0
        """Bodies this relay validated again because their record was not here."""
        self._records: OrderedDict[str, Record] = OrderedDict()

    def keep(self, key: str, record: Record) -> None:
        """`record` is the validation of the body stored under `key` (as stored: masked)."""
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self.size:
            self._records.popitem(last=False)

    def record(self, key: str, body: dict[str, Any]) -> Record:
        """The record stored under `key` with `body`; pydantic's ValidationError (a
        ValueError) when the body is not a valid record."""
        found = self._records.get(key)
        if found is not None:
            return found
        record: Record = record_adapter.validate_python(body)
        self.validations += 1
        self.keep(key, record)
        return record

    def __len__(self) -> int:
        return len(self._records)
