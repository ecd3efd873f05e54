"""The `file` writer: a whole file or none, named from the order key, never a second one;
JSON, CSV and POSLog that the agent's own POSLog parser reads back."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.parsers import ParseContext, parse_bytes
from agent.writers import DownItem, WriteError
from agent.writers.file import FileWriter, file_name
from contract import order_key
from tests.agent.downlink.orders import cancel, order


def _item(seq: int = 1, **kw: object) -> DownItem:
    body = order(**kw)  # type: ignore[arg-type]
    return DownItem(seq=seq, key=order_key(body), body=body)


def test_names_are_safe_and_distinct() -> None:
    assert file_name("order:ct-main:id-1:3", ".json") == "order_ct-main_id-1_3.json"
    odd = file_name("order:ct/main:..\\x y:3", ".json")
    assert odd.endswith(".json")
    assert "/" not in odd
    assert "\\" not in odd
    assert " " not in odd
    assert not odd.startswith(".")
    # Two keys that differ only in unsafe characters never share a name.
    assert file_name("order:a/b:1:1", ".csv") != file_name("order:a?b:1:1", ".csv")
    assert len(file_name("order:" + "x" * 500 + ":1:1", ".xml")) < 150


@pytest.mark.parametrize("fmt", ["json", "csv", "poslog"])
async def test_an_order_lands_once_and_a_resend_makes_no_second_file(
    tmp_path: Path, fmt: str
) -> None:
    writer = FileWriter(tmp_path, fmt)
    item = _item()
    name = await writer.write(item)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    first = (tmp_path / name).read_bytes()
    os.utime(tmp_path / name, (1, 1))
    assert await writer.write(item) == name  # a resend: nothing overwritten, nothing added
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert (tmp_path / name).read_bytes() == first
    assert (tmp_path / name).stat().st_mtime == 1


async def test_json_carries_the_order(tmp_path: Path) -> None:
    name = await FileWriter(tmp_path, "json").write(_item(seq=7))
    data = json.loads((tmp_path / name).read_text())
    assert data["seq"] == 7
    assert data["order_number"] == "10001"
    assert [line["sku"] for line in data["lines"]] == ["4711", "815"]
    assert data["total"] == "47.80"


async def test_csv_has_a_row_per_line(tmp_path: Path) -> None:
    name = await FileWriter(tmp_path, "csv").write(_item())
    rows = list(csv.DictReader(io.StringIO((tmp_path / name).read_text())))
    assert [(r["sku"], r["quantity"], r["amount"]) for r in rows] == [
        ("4711", "2", "37.80"),
        ("815", "1", "10.00"),
    ]
    assert {r["order_number"] for r in rows} == {"10001"}


async def test_poslog_is_read_back_by_the_agents_own_parser(tmp_path: Path) -> None:
    """The file is POSLog as POS systems write it: the agent's parser, which reads Xstore's
    CustomerOrderTransaction lines, takes it with the order's lines and total."""
    name = await FileWriter(tmp_path, "poslog").write(_item())
    data = (tmp_path / name).read_bytes()
    assert b"<CustomerOrderTransaction" in data
    assert b"CustomerOrderForPickup" in data
    context = ParseContext(file_name=name, sha256="0" * 64, store="0042")
    records = [r for r in parse_bytes(data, "poslog", context=context) if hasattr(r, "lines")]
    assert len(records) == 1
    sale = records[0]
    assert str(sale.total) == "47.80"  # type: ignore[attr-defined]
    assert [str(line.sku) for line in sale.lines if getattr(line, "sku", None)] == ["4711", "815"]  # type: ignore[attr-defined]


async def test_a_cancel_is_a_file_of_its_own(tmp_path: Path) -> None:
    writer = FileWriter(tmp_path, "poslog")
    await writer.write(_item())
    body = cancel()
    issued = datetime(2026, 12, 5, 10, tzinfo=UTC)
    item = DownItem(seq=2, key=order_key(body), body=body, issued_at=issued, prior="x")
    name = await writer.write(item)
    assert name.startswith("order_cancel_")
    assert len(list(tmp_path.iterdir())) == 2
    data = (tmp_path / name).read_bytes()
    assert b'TransactionStatus="Voided"' in data
    # The agent's parser reads it as a transaction cancelled whole.
    context = ParseContext(file_name=name, sha256="0" * 64, store="0042")
    [parsed] = parse_bytes(data, "poslog", context=context)
    assert getattr(parsed, "kind", None) == "cancel"
    assert getattr(parsed, "occurred_at", None) == issued


async def test_no_partial_file_is_ever_visible_and_no_temporary_file_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails half-way (disk full at fsync) leaves the folder as it was."""
    writer = FileWriter(tmp_path, "json")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match="No space left"):
        await writer.write(_item())
    assert list(tmp_path.iterdir()) == []


async def test_a_missing_folder_is_a_retryable_failure(tmp_path: Path) -> None:
    with pytest.raises(WriteError) as caught:
        await FileWriter(tmp_path / "unmounted", "csv").write(_item())
    assert not caught.value.permanent
    assert "does not exist" in caught.value.reason
