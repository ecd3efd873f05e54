"""The agent holds its records to the relay's limits while it reads files: a transaction
over one is committed as its own refusal (with the limit as its reason) and the rest of
the file flows; a file with more transactions than allowed is refused whole. What the
outbox holds always passes the relay's own check."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config import AgentLimits, OutboxSettings
from agent.outbox import Outbox
from agent.parsers import ParseContext, ParseError, parse_bytes, parse_stream
from agent.sources import IngestFile
from contract import Limits, Refused, check_text, check_value


def poslog(transactions: list[tuple[int, int, str]]) -> bytes:
    """A POSLog file: per transaction its number, how many lines, and their description.
    Each line sells one item at 1.00, paid cash; the total is read off the lines."""
    parts = [b'<?xml version="1.0" encoding="UTF-8"?>\n<POSLog>']
    for number, lines, description in transactions:
        items = "".join(
            f"<LineItem><SequenceNumber>{n}</SequenceNumber><Sale><ItemID>{n}</ItemID>"
            f"<Description>{description}</Description><ExtendedAmount>1.00</ExtendedAmount>"
            "<Quantity>1</Quantity></Sale></LineItem>"
            for n in range(1, lines + 1)
        )
        total = f"{lines}.00"
        parts.append(
            (
                "<Transaction><RetailStoreID>0042</RetailStoreID><WorkstationID>3</WorkstationID>"
                f"<SequenceNumber>{number}</SequenceNumber>"
                "<BusinessDayDate>2024-05-01</BusinessDayDate>"
                "<EndDateTime>2024-05-01T10:16:05+02:00</EndDateTime><RetailTransaction>"
                f"{items}<LineItem><Tender TenderType='Cash'><Amount>{total}</Amount></Tender>"
                f"</LineItem><Total TotalType='TransactionGrandAmount'>{total}</Total>"
                "</RetailTransaction></Transaction>"
            ).encode()
        )
    parts.append(b"</POSLog>")
    return b"".join(parts)


@pytest.fixture
def limits() -> AgentLimits:
    return AgentLimits(lines_per_transaction=5, string_chars=200)


@pytest.fixture
async def outbox(tmp_path: Path, limits: AgentLimits) -> AsyncIterator[Outbox]:
    box = await Outbox.open(
        tmp_path / "outbox.db", OutboxSettings(), key_file=tmp_path / "k", limits=limits
    )
    try:
        yield box
    finally:
        await box.close()


async def _ingest(outbox: Outbox, data: bytes, limits: AgentLimits) -> list[dict[str, object]]:
    sha = hashlib.sha256(data).hexdigest()
    context = ParseContext(file_name="day.xml", sha256=sha, limits=limits)
    items = parse_stream(io.BytesIO(data), "poslog", context=context)
    file = IngestFile(source="pos", path="/in/day.xml", name="day.xml", sha256=sha, size=len(data))
    await outbox.ingest(file, items)
    return [json.loads(row.wire)["body"] for row in await outbox.claim_pending(100)]


async def test_a_transaction_with_too_many_lines_is_refused_alone(
    outbox: Outbox, limits: AgentLimits
) -> None:
    data = poslog([(1, 2, "Tea"), (2, 6, "Tea"), (3, 5, "Tea")])
    bodies = await _ingest(outbox, data, limits)
    assert [b["kind"] for b in bodies] == ["sale", "refused", "sale"]
    refused = Refused.model_validate(bodies[1])
    assert refused.transaction_id == "2"
    assert refused.reason == "over a limit: body.lines: 6 items (limit 5)"
    assert refused.place == "/POSLog/Transaction[2]"
    assert [b["total"] for b in (bodies[0], bodies[2])] == ["2.00", "5.00"]
    for body in bodies:  # nothing the relay, with the same limits, would refuse
        assert check_value(body, limits, "body") is None


async def test_a_string_over_the_limit_is_refused_alone(
    outbox: Outbox, limits: AgentLimits
) -> None:
    data = poslog([(1, 1, "Tea"), (2, 1, "x" * 201), (3, 1, "Tea")])
    bodies = await _ingest(outbox, data, limits)
    assert [b["kind"] for b in bodies] == ["sale", "refused", "sale"]
    reason = str(bodies[1]["reason"])
    said = "body.lines[0].description: a string of 201 characters (limit 200)"
    assert reason == f"over a limit: {said}"
    for body in bodies:
        assert check_value(body, limits, "body") is None


async def test_a_number_over_the_digit_limit_is_refused_alone(outbox: Outbox) -> None:
    limits = AgentLimits(number_digits=12)
    outbox.limits = limits
    data = poslog([(1, 1, "Tea"), (2, 1, "Tea")]).replace(
        b"<Quantity>1</Quantity>", b"<Quantity>1.0000000000000</Quantity>", 1
    )
    bodies = await _ingest(outbox, data, limits)
    assert [b["kind"] for b in bodies] == ["refused", "sale"]
    assert "a number of 14 digits (limit 12)" in str(bodies[0]["reason"])


def test_a_file_with_more_transactions_than_allowed_is_refused_whole() -> None:
    data = poslog([(n, 1, "Tea") for n in range(1, 5)])
    context = ParseContext(file_name="day.xml", transactions_per_file=3)
    with pytest.raises(ParseError, match="more than 3 transactions"):
        parse_bytes(data, "poslog", context=context)
    assert len(parse_bytes(data, "poslog", context=ParseContext(file_name="day.xml"))) == 4


@pytest.mark.parametrize(
    "value",
    [
        "12.30",
        "1" * 41,
        "1" * 40,
        "-" + "1" * 20 + "." + "2" * 21,
        "1e5",
        "1E31",
        "1e-31",
        "+1e+30",
        "3e4f5a9b",
        "x" * 300,
        "Pack,5e7",
        "１" * 41,
    ],
)
def test_the_cheap_screen_agrees_with_the_relays_walk(value: str) -> None:
    limits = Limits(string_chars=256)
    for body in ({"sku": value}, {"lines": [{"n": value}]}, {"list": [value] * 3}):
        text = json.dumps(body, ensure_ascii=False)
        assert check_text(text, limits) == check_value(body, limits, "body")
    many = {"lines": [{}] * 6}
    few = Limits(lines_per_transaction=5)
    assert check_text(json.dumps(many), few) == check_value(many, few, "body")


def test_agent_limits_are_the_relays_with_one_more() -> None:
    relay_fields = set(Limits.model_fields)
    assert set(AgentLimits.model_fields) == relay_fields | {"transactions_per_file"}
    assert isinstance(AgentLimits(), Limits)


async def test_an_identifier_over_a_limit_is_left_out_of_its_refusal(
    outbox: Outbox, limits: AgentLimits
) -> None:
    data = poslog([(1, 1, "Tea"), (2, 1, "Tea")]).replace(
        b"<WorkstationID>3</WorkstationID>", b"<WorkstationID>1e-70000000</WorkstationID>", 1
    )
    bodies = await _ingest(outbox, data, limits)
    assert [b["kind"] for b in bodies] == ["refused", "sale"]
    assert "body.register: a number with exponent -70000000" in str(bodies[0]["reason"])
    assert bodies[0]["register"] is None
    assert bodies[0]["place"] == "/POSLog/Transaction[1]"
    for body in bodies:
        assert check_value(body, limits, "body") is None


async def test_a_record_central_rejected_shows_in_status_and_quarantine_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from typer.testing import CliRunner

    from agent.cli import _print_status, app
    from agent.config import AgentConfig
    from tests.agent.test_outbox import file, sale

    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nstore = "0042"\ndata_dir = "{tmp_path / "data"}"\n')
    cfg = AgentConfig(store="0042", data_dir=tmp_path / "data")
    box = await Outbox.open(cfg.outbox_path, cfg.outbox, key_file=cfg.outbox_key_file)
    try:
        await box.ingest(file("a"), iter([sale("1"), sale("2")]))
        await box.claim_pending(2)
        await box.acknowledge([1], {2: "description: 9000 characters, the limit is 4096\nX"})
        stats = await box.stats()
        assert await box.claim_pending(2) == []  # never sent again
    finally:
        await box.close()
    listed = CliRunner().invoke(app, ["quarantine", "list", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert "rejected by central (1), kept and never sent again:" in listed.output
    assert "sale  2024-05-01  sale:0042:1:2024-05-01:2" in listed.output
    # central's reason on one line: a newline in it cannot forge another entry
    assert "    description: 9000 characters, the limit is 4096_X" in listed.output
    _print_status(
        {
            "store": "0042",
            "agent_id": "pc",
            "version": "x",
            "answered_by": "running agent",
            "written_at": "now",
            "broker": "b",
            "connected": True,
            "outbox": {"rejected": stats.rejected},
        }
    )
    assert "rejected     1 record(s) central refused for good: kept, never sent again" in (
        capsys.readouterr().out
    )
