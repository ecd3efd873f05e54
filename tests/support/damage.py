"""Damage the way storage does: pages of a SQLite file overwritten in place."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PAGE", "wreck_pages"]

PAGE = 4096  # SQLite's default page size


def wreck_pages(db: Path, first: int, count: int = 2) -> None:
    """Overwrite `count` pages from page index `first` (0 is the header): `quick_check`
    fails, while pages before them (the meta table's, for a late `first`) still read."""
    data = bytearray(db.read_bytes())
    data[PAGE * first : PAGE * (first + count)] = b"\xde\xad\xbe\xef" * (PAGE * count // 4)
    db.write_bytes(bytes(data))
