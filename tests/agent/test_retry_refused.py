"""`quarantine retry refused:…`: one refused transaction read again after a fix, from its
archived file, and put into its source folder as a file of its own whose records keep the
keys the POS's identifiers give (so central keeps one of each and closes the refusal)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path

from typer.testing import CliRunner

from agent.cli import app
from agent.config import load_agent_config
from agent.outbox import Outbox, list_refused
from agent.parsers import ParseContext, Parsed, parse_bytes, parse_stream
from agent.parsers._refuse import refused
from agent.retry import reread_refused
from agent.sources import IngestFile
from contract import Refused, Transaction
from tests.agent.parsers.golden import TESTDATA, input_file
from tests.agent.test_refused_flow import _day_with_one_bad_transaction

STORE = "0042"
DAY = "2024-05-02"


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        "[agent]\n"
        f'store = "{STORE}"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        'timezone = "Europe/Berlin"\n'
        "[agent.broker]\n"
        'url = "mqtt://127.0.0.1:1"\n'
        "[[agent.sources]]\n"
        'name = "xstore"\n'
        f'path = "{tmp_path / "pos"}"\n'
        'format = "poslog"\n'
        "[[agent.sources]]\n"
        'name = "simphony"\n'
        f'path = "{tmp_path / "checks"}"\n'
        'format = "micros"\n'
        'columns = { "tmed.101" = "card" }\n'
    )
    return config


async def _ingest(config: Path, name: str, data: bytes, items: Iterable[Parsed]) -> None:
    """The file as an earlier agent took it: its records in the outbox, the file archived."""
    cfg = load_agent_config(config)
    archived = cfg.archive_dir / DAY / name
    archived.parent.mkdir(parents=True, exist_ok=True)
    archived.write_bytes(data)
    box = await Outbox.open(cfg.outbox_path, cfg.outbox, key_file=cfg.data_dir / "outbox.key")
    try:
        sha = hashlib.sha256(data).hexdigest()
        await box.ingest(IngestFile("pos", f"/in/{name}", name, sha, len(data)), iter(items))
    finally:
        await box.close()


def _as_an_older_agent_refused(data: bytes, fmt: str, name: str, index: int) -> list[Parsed]:
    """What today's parser makes of the file, with transaction `index` (0-based) refused
    the way an older agent refused it: the state a code fix leaves behind."""
    sha = hashlib.sha256(data).hexdigest()
    context = ParseContext(file_name=name, sha256=sha, store=STORE, currency="EUR")
    items = [i for i in parse_bytes(data, fmt, context=context) if isinstance(i, Transaction)]
    bad = items[index]
    place = f"/POSLog/Transaction[{index + 1}]" if fmt == "poslog" else f"guestChecks[{index}]"
    items[index] = refused(  # type: ignore[call-overload]
        fmt,
        context,
        place + "/RetailTransaction",
        "a shape this version could not read",
        "<Transaction/>" if fmt == "poslog" else "{}",
        store=bad.store,
        register=bad.register,
        transaction_id=bad.transaction_id,
        business_date=bad.business_date,
    )
    return items  # type: ignore[return-value]


async def test_a_refused_poslog_transaction_reads_again_under_its_own_key(tmp_path: Path) -> None:
    config = _config(tmp_path)
    data = input_file(TESTDATA / "poslog_multi_txn").read_bytes()
    items = _as_an_older_agent_refused(data, "poslog", "day.xml", 2)
    wanted = parse_bytes(
        data, "poslog", context=ParseContext(file_name="day.xml", store=STORE, currency="EUR")
    )
    sale = wanted[2]
    assert isinstance(sale, Transaction)
    await _ingest(config, "day.xml", data, items)
    cfg = load_agent_config(config)
    (row,) = list_refused(cfg.outbox_path)
    assert row.key.split(":", 1)[1] == sale.key.split(":", 1)[1]

    checked = CliRunner().invoke(
        app, ["quarantine", "retry", row.key, "--dry-run", "--config", str(config)]
    )
    assert checked.exit_code == 0, checked.output
    assert f"reads now as {sale.kind} {sale.total}" in checked.stdout
    assert not any((tmp_path / "pos").glob("*")), "a dry run writes nothing"

    result = CliRunner().invoke(app, ["quarantine", "retry", row.key, "--config", str(config)])
    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "pos").glob("day.retry-*.xml")
    assert not list((tmp_path / "pos").glob("*.tmp"))
    again = written.read_bytes()
    sha = hashlib.sha256(again).hexdigest()
    context = ParseContext(file_name=written.name, sha256=sha, store=STORE, currency="EUR")
    (record,) = list(parse_stream(io.BytesIO(again), "poslog", context=context))
    assert isinstance(record, Transaction)
    # The same POS transaction under the same key, whichever file it came in.
    assert record.key == sale.key
    assert record.total == sale.total
    assert record.lines == sale.lines


async def test_a_transaction_still_unreadable_says_why_and_writes_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path)
    data = _day_with_one_bad_transaction()
    sha = hashlib.sha256(data).hexdigest()
    context = ParseContext(file_name="day.xml", sha256=sha)
    await _ingest(
        config, "day.xml", data, parse_stream(io.BytesIO(data), "poslog", context=context)
    )
    (row,) = list_refused(load_agent_config(config).outbox_path)
    result = CliRunner().invoke(app, ["quarantine", "retry", row.key, "--config", str(config)])
    assert result.exit_code == 1
    assert "still refused at /POSLog/Transaction[1]/RetailTransaction/LineItem[1]" in result.stderr
    assert "not a number" in result.stderr
    assert not (tmp_path / "pos").exists() or not any((tmp_path / "pos").iterdir())
    unknown = CliRunner().invoke(
        app, ["quarantine", "retry", "refused:0042:9:2024-05-02:nope", "--config", str(config)]
    )
    assert unknown.exit_code == 1
    assert "no refused transaction with that key" in unknown.stderr


async def test_a_refused_guest_check_reads_again_with_its_numbers_as_written(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    case = Path(__file__).parent / "parsers" / "realworld" / "simphony_bi_guest_checks"
    raw = json.loads((case / "input.json").read_text())
    raw["locRef"] = STORE
    data = json.dumps(raw, indent=2).encode()
    items = _as_an_older_agent_refused(data, "micros", "checks.json", 1)
    refused_record = items[1]
    assert isinstance(refused_record, Refused)
    await _ingest(config, "checks.json", data, items)
    outcome = reread_refused(load_agent_config(config), refused_record.key)
    assert outcome.readable, outcome.said
    assert outcome.origin == "archive"
    assert outcome.written is not None
    assert outcome.written.parent == tmp_path / "checks"
    text = outcome.written.read_text()
    assert '"chkTtl": 150.5' in text  # the numbers exactly as the POS wrote them
    assert '"dspTtl": -10' in text
    (check,) = json.loads(text)["guestChecks"]
    assert check["chkNum"] == 4102
    assert f"sale 150.50 EUR (sale:{refused_record.key.split(':', 1)[1]})" == outcome.said


async def test_a_retried_transaction_is_written_inside_its_source_folder(tmp_path: Path) -> None:
    config = _config(tmp_path)
    data = input_file(TESTDATA / "poslog_multi_txn").read_bytes()
    # The record names its file with a path that climbs out: only the name is used.
    items = _as_an_older_agent_refused(data, "poslog", "../../escape\n.xml", 2)
    await _ingest(config, "escape_.xml", data, items)  # archived under its safe name
    cfg = load_agent_config(config)
    (row,) = list_refused(cfg.outbox_path)
    result = CliRunner().invoke(app, ["quarantine", "retry", row.key, "--config", str(config)])
    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "pos").iterdir()
    assert written.name.startswith("escape_.retry-")
    assert not list(tmp_path.glob("escape*"))
    assert not list(tmp_path.parent.glob("escape*"))
