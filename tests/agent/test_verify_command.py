"""`tillbridge-agent verify FILE… [--json]`: per file, transactions by kind, refused
transactions with place and reason, imbalances with amounts; exit 0 only when every
transaction reads and reconciles, 1 when some do not, 2 when a file is refused whole."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from agent.cli import app
from tests.agent.parsers.golden import TESTDATA, input_file

runner = CliRunner()
CORPUS = Path(__file__).parent / "parsers" / "realworld"


def _input(case: str) -> str:
    return str(input_file(CORPUS / case))


def test_files_that_read_and_reconcile_exit_0() -> None:
    result = runner.invoke(app, ["verify", _input("ncr_acs_grocery_day"), _input("ncr_acs_small")])
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].endswith("ncr_acs_grocery_day/input.xml: ok (poslog)")
    assert "  transactions: sale 42" in lines
    assert "  counted, not forwarded: control 9" in lines


def test_a_refused_transaction_is_listed_with_place_and_reason_and_exits_1() -> None:
    result = runner.invoke(app, ["verify", "--json", _input("semantics_refused_one")])
    assert result.exit_code == 1
    [found] = json.loads(result.stdout)["files"]
    assert found["ok"] is False
    assert found["transactions"] == {"refused": 1, "sale": 2}
    assert found["refused"] == [
        {
            "transaction_id": "902",
            "place": "/POSLog/Transaction[2]/RetailTransaction/LineItem[1]/Sale/ExtendedAmount",
            "reason": "not a number: '1O.00'",
        }
    ]


def test_an_imbalance_is_listed_with_its_amounts() -> None:
    result = runner.invoke(app, ["verify", "--json", _input("semantics_tax")])
    assert result.exit_code == 1
    [found] = json.loads(result.stdout)["files"]
    assert found["imbalances"] == [
        {
            "transaction_id": "504",
            "place": "/POSLog/Transaction[4]",
            "kind": "sale",
            "total": "17.86",
            "imbalance": "0.01",
            "tender_imbalance": "0.00",
        }
    ]
    table = runner.invoke(app, ["verify", _input("semantics_tax")]).stdout
    assert "NOT READY" in table
    assert "504" in table
    assert "0.01" in table


def test_a_file_refused_whole_exits_2_and_the_others_are_still_reported(tmp_path: Path) -> None:
    cut = tmp_path / "cut.xml"
    cut.write_bytes(input_file(TESTDATA / "poslog_2x_sale_basic").read_bytes()[:300])
    result = runner.invoke(app, ["verify", "--json", str(cut), _input("ncr_acs_small")])
    assert result.exit_code == 2
    files = json.loads(result.stdout)["files"]
    assert files[0]["ok"] is False
    assert "malformed XML" in files[0]["error"]
    assert files[1]["ok"] is True
