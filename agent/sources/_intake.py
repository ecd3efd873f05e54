"""How a complete file reaches the sink: opened only while it is read, parsed lazily, and
every failure sorted once, here, into the file's fault or a passing one:

    ParseError, or any other failure inside the parser    the file's fault: refuse it
    OSError while reading the file (`Records.read_error`)   passing: try again later
    whatever the sink raises otherwise                     passing: try again later
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from agent.parsers import Parsed, ParseError

from ._files import ChangedError
from ._share import open_shared
from ._sink import FileSink, IngestFile, IngestOutcome

__all__ = ["Records", "ingest", "open_unchanged"]


class Records:
    """The parser's records as the sink consumes them (on a worker thread).

    A record for another store refuses the file; an unexpected failure inside the parser
    is the file's fault too (a ParseError, so the sink commits nothing); a failed read of
    the file is not, and is kept in `read_error` so the file is tried again.
    """

    def __init__(self, items: Iterator[Parsed], store: str) -> None:
        self._items = items
        self._store = store
        self.read_error: OSError | None = None

    def __iter__(self) -> Records:
        return self

    def __next__(self) -> Parsed:
        try:
            item = next(self._items)
        except (StopIteration, ParseError):
            raise
        except OSError as exc:
            self.read_error = exc
            raise
        except Exception as exc:
            raise ParseError(f"the file could not be parsed ({type(exc).__name__}: {exc})") from exc
        if item.store != self._store:
            raise ParseError(
                f"the file is for store {item.store!r}, this agent sends for store "
                f"{self._store!r}; put it in that store's folder, or correct agent.store",
                getattr(item, "place", "")
                or getattr(getattr(item, "source", None), "position", ""),
            )
        return item


def open_unchanged(path: Path, size: int, mtime_ns: int) -> BinaryIO:
    """Open for parsing (sharing delete: the POS is never blocked); ChangedError when it
    is no longer the file that was hashed."""
    handle = open_shared(path)
    stat = os.fstat(handle.fileno())
    if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
        handle.close()
        raise ChangedError(f"{path.name} changed after it was hashed")
    return handle


async def ingest(
    sink: FileSink, handle: BinaryIO, file: IngestFile, records: Records
) -> IngestOutcome | Exception:
    """The sink's outcome, or what it raised. The file is closed before this returns:
    Windows cannot move an open file, and the next step moves it."""
    with handle:
        try:
            return await sink.ingest(file, records)
        except Exception as exc:  # noqa: BLE001 - the caller sorts out refused or passing
            return exc
