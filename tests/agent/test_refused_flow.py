"""A refused transaction on its way: parsed out of a file whose other transactions flow,
committed to the outbox like any record (kind `refused`, sent to central), its card
number masked, counted by the outbox per business day and in the end-of-day record, and
listed by `quarantine list`."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.config import AgentConfig, OutboxSettings
from agent.daemon import Agent
from agent.eod import DayCounts, summarise_day
from agent.outbox import Outbox, list_refused
from agent.parsers import ParseContext, parse_stream
from agent.sources import IngestFile
from contract import Refused
from tests.agent.parsers.golden import TESTDATA, input_file
from tests.agent.test_daemon import write_config

PAN = b"4111111111111111"


def _day_with_one_bad_transaction() -> bytes:
    data = input_file(TESTDATA / "poslog_multi_txn").read_bytes()
    head, _, rest = data.partition(b"<Transaction")
    parts = [b"<Transaction" + p for p in rest.split(b"<Transaction")]
    broken = parts[1].replace(b"<ExtendedAmount>", b"<ExtendedAmount>x", 1)
    broken = broken.replace(
        b"</RetailTransaction>",
        b"<LineItem><Tender TenderType='CreditDebit'><Amount>1.00</Amount><CreditDebit>"
        b"<PrimaryAccountNumber>" + PAN + b"</PrimaryAccountNumber></CreditDebit></Tender>"
        b"</LineItem></RetailTransaction>",
        1,
    )
    return head + parts[0] + broken + b"".join(parts[2:])


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await Outbox.open(
        tmp_path / "outbox.db", OutboxSettings(), key_file=tmp_path / "outbox.key"
    )
    try:
        yield box
    finally:
        await box.close()


async def test_a_refused_transaction_is_committed_sent_and_counted(outbox: Outbox) -> None:
    data = _day_with_one_bad_transaction()
    sha = hashlib.sha256(data).hexdigest()
    items = parse_stream(
        io.BytesIO(data), "poslog", context=ParseContext(file_name="day.xml", sha256=sha)
    )
    file = IngestFile(source="pos", path="/in/day.xml", name="day.xml", sha256=sha, size=len(data))
    outcome = await outbox.ingest(file, items)
    rows = await outbox.claim_pending(10)
    kinds = [row.kind for row in rows]
    assert kinds.count("refused") == 1
    assert outcome.inserted == len(rows) == 5  # four sales and the refused one
    refused_row = rows[kinds.index("refused")]
    body = json.loads(refused_row.wire)["body"]
    record = Refused.model_validate(body)
    assert "not a number" in record.reason
    assert PAN.decode() not in record.fragment  # masked before it was buffered
    assert "1111" in record.fragment

    day = record.business_date
    assert await outbox.day_refused(day.isoformat()) == 1
    (summary,) = summarise_day(
        store=record.store,
        business_date=day,
        transactions=[],
        counts=DayCounts(refused=await outbox.day_refused(day.isoformat())),
        default_currency="EUR",
        closed_at=datetime(2024, 5, 2, tzinfo=UTC),
    )
    assert summary.refused == 1
    assert await outbox.day_refused(date(2024, 5, 2).isoformat()) == 0


async def test_quarantine_list_names_the_refused_transactions_beside_the_files(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, "mqtt://127.0.0.1:1")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    box = await Outbox.open(
        data_dir / "outbox.db", OutboxSettings(), key_file=data_dir / "outbox.key"
    )
    try:
        data = _day_with_one_bad_transaction()
        sha = hashlib.sha256(data).hexdigest()
        context = ParseContext(file_name="day.xml", sha256=sha)
        file = IngestFile(
            source="pos", path="/in/day.xml", name="day.xml", sha256=sha, size=len(data)
        )
        await box.ingest(file, parse_stream(io.BytesIO(data), "poslog", context=context))
        (row,) = list_refused(data_dir / "outbox.db")  # read-only, beside the open outbox
    finally:
        await box.close()
    assert row.file == "day.xml"
    assert row.place == "/POSLog/Transaction[2]/RetailTransaction/LineItem[1]/Sale/ExtendedAmount"
    assert row.state == "pending"
    result = CliRunner().invoke(app, ["quarantine", "list", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "refused transactions (1)" in result.stdout
    assert f"    {row.place}: {row.reason}" in result.stdout
    assert list_refused(tmp_path / "none.db") == []


async def test_the_daemons_day_summary_counts_the_refused_transactions(tmp_path: Path) -> None:
    config = AgentConfig(store="0042", data_dir=tmp_path, timezone="UTC")
    box = await Outbox.open(config.outbox_path, config.outbox, key_file=tmp_path / "k")
    try:
        data = _day_with_one_bad_transaction()
        sha = hashlib.sha256(data).hexdigest()
        context = ParseContext(file_name="day.xml", sha256=sha)
        file = IngestFile("pos", "/in/day.xml", "day.xml", sha, len(data))
        await box.ingest(file, parse_stream(io.BytesIO(data), "poslog", context=context))
        agent = Agent(config)
        agent.outbox = box
        assert await agent.end_of_day(datetime(2024, 5, 3, 12, tzinfo=UTC)) == 1
        (row,) = [r for r in await box.claim_pending(100) if r.kind == "end_of_day"]
        body = json.loads(row.wire)["body"]
        assert body["refused"] == 1
        assert body["by_kind"]["sale"]["count"] == 4
    finally:
        await box.close()
