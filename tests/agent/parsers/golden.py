"""The golden-case runner every parser's tests share.

A case is a folder `tests/agent/parsers/testdata/<case>/` holding `input.*`, an optional
`context.json` (file_name, store, timezone, currency, encoding, delimiter, columns,
format — default auto) and either `expected.json` (the records, skipped transactions
left out, or under `"skipped"` when the case lists them) or `expected.err` (a fragment
of the refusal). Regenerate an expected file only after reading the diff.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import zoneinfo
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import strategies as st

from agent.parsers import REGISTRY, ParseContext, ParseError, Skipped, parse_bytes

TESTDATA = Path(__file__).parent / "testdata"
T = TypeVar("T")

__all__ = [
    "TESTDATA",
    "cases",
    "check_case",
    "context_for",
    "input_file",
    "mutations",
    "parse_raw",
    "run_case",
]


def cases(*prefixes: str) -> list[Path]:
    """The case folders whose names start with one of `prefixes`."""
    return sorted(p for p in TESTDATA.iterdir() if p.is_dir() and p.name.startswith(prefixes))


def input_file(case: Path) -> Path:
    return next(case.glob("input.*"))


def context_for(case: Path, data: bytes) -> tuple[ParseContext, str]:
    """The context a source would give: file name, content hash and the case's settings."""
    file = case / "context.json"
    settings: dict[str, Any] = json.loads(file.read_text()) if file.exists() else {}
    context = ParseContext(
        file_name=settings.get("file_name", input_file(case).name),
        sha256=hashlib.sha256(data).hexdigest(),
        store=settings.get("store"),
        timezone=zoneinfo.ZoneInfo(settings.get("timezone", "UTC")),
        currency=settings.get("currency", "EUR"),
        encoding=settings.get("encoding"),
        delimiter=settings.get("delimiter"),
        columns=settings.get("columns", {}),
    )
    return context, settings.get("format", "auto")


def run_case(case: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records, skipped) of a case's input, as JSON-ready dicts."""
    data = input_file(case).read_bytes()
    context, fmt = context_for(case, data)
    records: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for item in parse_bytes(data, fmt, context=context):
        if isinstance(item, Skipped):
            skipped.append(
                {
                    "reason": item.reason,
                    "store": item.store,
                    "business_date": item.business_date and item.business_date.isoformat(),
                    "transaction_id": item.transaction_id,
                    "register": item.register,
                }
            )
        else:
            records.append(item.model_dump(mode="json"))
    return records, skipped


def check_case(case: Path) -> None:
    """Assert a case's input gives exactly its expected records (or its refusal)."""
    err = case / "expected.err"
    if err.exists():
        with pytest.raises(ParseError) as caught:
            run_case(case)
        assert err.read_text().strip() in str(caught.value)
        return
    expected = json.loads((case / "expected.json").read_text())
    records, skipped = run_case(case)
    if isinstance(expected, dict):
        assert records == expected["records"]
        assert skipped == expected["skipped"]
    else:
        assert records == expected


def mutations(
    seeds: list[tuple[T, bytes]], noise: list[bytes]
) -> st.SearchStrategy[tuple[T, bytes]]:
    """A seed input (with what came with it) flipped, cut, spliced and salted with `noise`:
    the shapes of damage real exports show, for fuzzing a parser."""

    @st.composite
    def mutated(draw: st.DrawFn) -> tuple[T, bytes]:
        tag, seed = draw(st.sampled_from(seeds))
        data = bytearray(seed)
        for _ in range(draw(st.integers(min_value=1, max_value=8))):
            op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice"]))
            at = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
            if op == "flip" and data:
                data[at] = draw(st.integers(min_value=0, max_value=255))
            elif op == "insert":
                data[at:at] = draw(st.sampled_from(noise) | st.binary(max_size=8))
            elif op == "delete":
                del data[at : at + draw(st.integers(min_value=1, max_value=16))]
            elif op == "truncate":
                del data[at:]
            elif op == "splice":
                data[at:at] = draw(st.sampled_from(seeds))[1][: draw(st.integers(0, 64))]
        return tag, bytes(data)

    return mutated()


def parse_raw(fmt: str, data: bytes, context: ParseContext) -> None:
    """Run one parser itself over `data`: a refusal is fine, anything else fails the test."""
    with contextlib.suppress(ParseError):
        for _ in REGISTRY[fmt].parse(io.BytesIO(data), context=context):
            pass
