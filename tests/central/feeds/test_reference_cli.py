"""`tillbridge-central stores import|list` and `customers purge`, as an operator runs them
against the relay's config and inbox."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from central.cli import app
from central.feeds import Fanout
from central.inbox import open_inbox
from central.reference_cli import read_xref
from contract import CustomerPurge, RefItem, down_body_adapter, reference_entity

from .reference import T0, customer, item, price

CONFIG = """
[central]
data_dir = "{data}"
[central.inbox]
url = "sqlite:///{data}/inbox.db"
[[central.targets]]
name = "crm"
type = "salesforce"
login_url = "https://acme.my.salesforce.test"
client_id = "app"
client_secret = "secret"
kinds = ["sale"]
[central.feeds.crm]
type = "salesforce"
target = "crm"
"""

CSV = """store,name,commercetools_channel,salesforce_location,currency
0042,Berlin Mitte,berlin,BER-01,EUR
0043,Hamburg,hamburg,HH-01,EUR
"""


def config(tmp_path: Path) -> Path:
    file = tmp_path / "central.toml"
    file.write_text(CONFIG.format(data=tmp_path), encoding="utf-8")
    return file


def test_stores_are_imported_from_csv_and_listed(tmp_path: Path) -> None:
    file = config(tmp_path)
    sheet = tmp_path / "stores.csv"
    sheet.write_text(CSV, encoding="utf-8")
    runner = CliRunner()
    done = runner.invoke(app, ["stores", "import", str(sheet), "--config", str(file)])
    assert done.exit_code == 0, done.output
    assert "2 stores imported; 0 reference messages queued" in done.output
    listed = runner.invoke(app, ["stores", "list", "--config", str(file)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].startswith("store,name,commercetools_store,commercetools_channel")
    assert lines[1] == "0042,Berlin Mitte,,berlin,,EUR,,BER-01,"


def test_a_bad_sheet_is_refused_by_line(tmp_path: Path) -> None:
    file = config(tmp_path)
    sheet = tmp_path / "stores.csv"
    sheet.write_text("store,currency\n0042,EUR\n0042,USD\n", encoding="utf-8")
    done = CliRunner().invoke(app, ["stores", "import", str(sheet), "--config", str(file)])
    assert done.exit_code == 2
    assert "line 3: store 0042 is named twice" in done.output
    for text, problem in [
        ("name\nx\n", "one of them store"),
        ("store,colour\n0042,red\n", "unknown column colour"),
        ("store,currency\n0042,euro\n", "line 2: currency 'euro'"),
        ("store\n../etc\n", "line 2: store '../etc'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(problem)):
            read_xref(text)


def test_a_purge_reaches_every_known_store_and_leaves_central(tmp_path: Path) -> None:
    file = config(tmp_path)
    sheet = tmp_path / "stores.csv"
    sheet.write_text(CSV, encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["stores", "import", str(sheet), "-c", str(file)]).exit_code == 0

    async def hold() -> None:
        inbox = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
        body = customer("003A")
        await inbox.put_reference(
            "customer:crm:003A",
            "customer",
            "crm",
            body.version,
            body.model_dump_json(),
            body.changed_at,
        )
        await inbox.close()

    asyncio.run(hold())
    done = runner.invoke(app, ["customers", "purge", "003A", "--config", str(file)])
    assert done.exit_code == 0, done.output
    assert "purge of 003A queued for 2 stores" in done.output

    async def check() -> None:
        inbox = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
        try:
            for store in ("0042", "0043"):
                (row,) = await inbox.pending_down(store)
                body = down_body_adapter.validate_json(row.body)
                assert isinstance(body, CustomerPurge)
                assert (body.source, body.customer_id) == ("crm", "003A")
            assert await inbox.reference_rows() == []
        finally:
            await inbox.close()

    asyncio.run(check())


def test_a_store_moved_to_another_channel_gets_its_new_prices_at_once(tmp_path: Path) -> None:
    file = config(tmp_path)
    sheet = tmp_path / "stores.csv"
    sheet.write_text(CSV, encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["stores", "import", str(sheet), "-c", str(file)]).exit_code == 0
    pen = item("PEN", 1, price("1.00", "berlin"), price("1.10", "hamburg"))

    async def hold() -> None:
        inbox = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
        try:
            await inbox.put_reference(
                reference_entity(pen), "item", pen.source, pen.version, pen.model_dump_json(), T0
            )
            await Fanout(inbox, {}, {}).send(pen)
        finally:
            await inbox.close()

    asyncio.run(hold())
    sheet.write_text(CSV.replace("0043,Hamburg,hamburg", "0043,Hamburg,berlin"), encoding="utf-8")
    done = runner.invoke(app, ["stores", "import", str(sheet), "-c", str(file)])
    assert "2 stores imported; 1 reference messages queued" in done.output

    async def check() -> None:
        inbox = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
        try:
            assert len(await inbox.pending_down("0042")) == 1  # unchanged: nothing new
            first, moved = (
                down_body_adapter.validate_json(r.body) for r in await inbox.pending_down("0043")
            )
            assert isinstance(first, RefItem)
            assert isinstance(moved, RefItem)
            assert [p.channel for p in first.prices] == ["hamburg"]
            assert [p.channel for p in moved.prices] == ["berlin"]
        finally:
            await inbox.close()

    asyncio.run(check())
