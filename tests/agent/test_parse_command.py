"""`tillbridge-agent parse FILE… [--format …] [--store ID]`: canonical records as JSON lines
and exit 0; refused input exits 2 with one stderr line naming file, place and reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from agent.cli import app
from contract import record_adapter
from tests.agent.parsers.golden import TESTDATA, input_file

runner = CliRunner()


def _copy(case: str, tmp_path: Path, name: str | None = None) -> Path:
    source = input_file(TESTDATA / case)
    target = tmp_path / (name or f"{case}{source.suffix}")
    shutil.copyfile(source, target)
    return target


def _expected_keys(case: str) -> list[str]:
    expected = json.loads((TESTDATA / case / "expected.json").read_text())
    records = expected["records"] if isinstance(expected, dict) else expected
    return [r["key"] for r in records]


def test_files_of_different_formats_print_their_records_as_json_lines(tmp_path: Path) -> None:
    poslog = _copy("poslog_2x_sale_basic", tmp_path)
    micros = _copy("micros_simphony_basic", tmp_path)
    result = runner.invoke(app, ["parse", str(poslog), str(micros)])  # --format auto
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    records = [record_adapter.validate_json(line) for line in lines]
    assert [r.key for r in records] == _expected_keys("poslog_2x_sale_basic") + _expected_keys(
        "micros_simphony_basic"
    )


def test_skipped_transactions_are_not_printed(tmp_path: Path) -> None:
    training = _copy("poslog_training", tmp_path)
    result = runner.invoke(app, ["parse", str(training), "--format", "poslog"])
    assert result.exit_code == 0, result.stderr
    assert [record_adapter.validate_json(x).key for x in result.stdout.splitlines()] == (
        _expected_keys("poslog_training")
    )


def test_store_fills_a_file_that_names_none(tmp_path: Path) -> None:
    bare = _copy("micros_bare_list_store_from_context", tmp_path)
    refused = runner.invoke(app, ["parse", str(bare), "--format", "micros"])
    assert refused.exit_code == 2
    taken = runner.invoke(app, ["parse", str(bare), "--format", "micros", "--store", "0042"])
    assert taken.exit_code == 0, taken.stderr
    assert [record_adapter.validate_json(x).key for x in taken.stdout.splitlines()] == (
        _expected_keys("micros_bare_list_store_from_context")
    )


def test_a_refused_transaction_exits_2_with_one_line_naming_file_place_and_reason(
    tmp_path: Path,
) -> None:
    good = _copy("poslog_2x_sale_basic", tmp_path)
    bad = _copy("poslog_bad_amount", tmp_path, "bad.xml")
    result = runner.invoke(app, ["parse", str(bad), str(good)])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    file, place, reason = line.split(": ", 2)
    assert file == str(bad)
    assert place.startswith("/POSLog/Transaction[1]/")
    assert "not a number" in reason
    # The refused transaction is printed as its `refused` record; the good file after it
    # still prints.
    records = [record_adapter.validate_json(x) for x in result.stdout.splitlines()]
    assert next(r.kind for r in records) == "refused"
    assert [r.key for r in records][1:] == _expected_keys("poslog_2x_sale_basic")


def test_the_wrong_format_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    micros = _copy("micros_simphony_basic", tmp_path)
    truncated = tmp_path / "cut.xml"
    truncated.write_bytes(input_file(TESTDATA / "poslog_2x_sale_basic").read_bytes()[:300])
    missing = tmp_path / "gone.xml"
    result = runner.invoke(
        app, ["parse", str(micros), str(truncated), str(missing), "--format", "poslog"]
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [str(micros), str(truncated), str(missing)]
    assert "malformed XML" in lines[1]
    assert "cannot read" in lines[2]


def test_an_unknown_time_zone_is_refused() -> None:
    result = runner.invoke(app, ["parse", "x.xml", "--timezone", "Mars/Olympus"])
    assert result.exit_code == 2
    assert "--timezone: unknown time zone 'Mars/Olympus'" in result.stderr
