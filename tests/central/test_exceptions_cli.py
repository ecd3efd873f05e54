"""`tillbridge-central exceptions list|show|retry|resolve` on a real inbox file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from central.cli import app
from central.config import load_central_config
from central.delivery import Delivery
from central.inbox import open_inbox

from .connectors import samples
from .test_delivery import Servers, put

runner = CliRunner()


def write_config(tmp_path: Path, *, routed: bool) -> Path:
    store = '[central.stores."0042"]\ncurrency = "EUR"\n' if routed else ""
    file = tmp_path / "central.toml"
    file.write_text(
        f"""
[central]
relay_id = "relay-cli"
data_dir = "{tmp_path}"
[[central.targets]]
name = "sandbox"
type = "http"
url = "http://sandbox.test"
token_file = "{tmp_path / "token"}"
{store}""",
        encoding="utf-8",
    )
    (tmp_path / "token").write_text("static-token-123\n", encoding="utf-8")
    return file


def deliver(file: Path, servers: Servers) -> None:
    async def go() -> None:
        cfg = load_central_config(file)
        inbox = await open_inbox(cfg.inbox_url, relay_id=cfg.relay_id)
        try:
            delivery = Delivery(cfg, inbox, transport_for=servers)
            await delivery.drain()
            await delivery.aclose()
        finally:
            await inbox.close()

    asyncio.run(go())


def seed(file: Path) -> None:
    async def go() -> None:
        cfg = load_central_config(file)
        inbox = await open_inbox(cfg.inbox_url)
        try:
            await put(inbox, samples.sale("9001"), samples.sale("9002"))
        finally:
            await inbox.close()

    asyncio.run(go())


def test_an_operator_lists_shows_retries_and_resolves(tmp_path: Path) -> None:
    servers = Servers()
    unrouted = write_config(tmp_path, routed=False)
    seed(unrouted)
    deliver(unrouted, servers)

    listed = runner.invoke(app, ["exceptions", "--config", str(unrouted), "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["reason"] for r in rows] == [
        'store 0042 has no routing: add [central.stores."0042"]'
    ] * 2
    first, second = (r["id"] for r in rows)

    table = runner.invoke(app, ["exceptions", "--config", str(unrouted), "list"])
    assert "(routing)" in table.stdout

    shown = runner.invoke(app, ["exceptions", "--config", str(unrouted), "show", str(first)])
    assert shown.exit_code == 0
    assert "unroutable" in shown.stdout

    routed = write_config(tmp_path, routed=True)
    retried = runner.invoke(
        app, ["exceptions", "--config", str(routed), "retry", str(first), "--by", "ops"]
    )
    assert retried.exit_code == 0, retried.output
    assert "goes through routing again" in retried.stdout
    resolved = runner.invoke(
        app,
        [
            "exceptions",
            "--config",
            str(routed),
            "resolve",
            str(second),
            "--note",
            "Voided in the shop.",
        ],
    )
    assert resolved.exit_code == 0, resolved.output
    deliver(routed, servers)
    assert servers["sandbox"].puts == 1

    left = runner.invoke(app, ["exceptions", "--config", str(routed), "list", "--json"])
    assert json.loads(left.stdout) == []
    history = runner.invoke(app, ["exceptions", "--config", str(routed), "list", "--all", "--json"])
    assert {r["resolution"] for r in json.loads(history.stdout)} == {
        "retried",
        "Voided in the shop.",
    }


def test_acting_on_a_missing_exception_fails_clearly(tmp_path: Path) -> None:
    file = write_config(tmp_path, routed=True)
    result = runner.invoke(app, ["exceptions", "--config", str(file), "retry", "99"])
    assert result.exit_code == 1
    assert "99: no exception 99" in result.output


def test_a_bad_morning_is_read_by_reason_and_retried_as_a_group(tmp_path: Path) -> None:
    servers = Servers()
    unrouted = write_config(tmp_path, routed=False)
    seed(unrouted)
    deliver(unrouted, servers)

    grouped = runner.invoke(app, ["exceptions", "--config", str(unrouted), "groups", "--json"])
    assert grouped.exit_code == 0, grouped.output
    (group,) = json.loads(grouped.stdout)
    assert group["count"] == 2
    assert group["reason"] == "store # has no routing: add [central.stores.#]"
    assert group["example"] == 'store 0042 has no routing: add [central.stores."0042"]'
    assert group["stores"] == ["0042"]
    text = runner.invoke(app, ["exceptions", "--config", str(unrouted), "groups"])
    assert text.stdout.strip() == (
        "2 records: store # has no routing: add [central.stores.#] (routing)"
    )

    routed = write_config(tmp_path, routed=True)
    unknown = runner.invoke(
        app, ["exceptions", "--config", str(routed), "retry", "--reason", "quantity"]
    )
    assert unknown.exit_code == 1
    assert "No open exception's reason holds 'quantity'" in unknown.output
    retried = runner.invoke(
        app,
        ["exceptions", "--config", str(routed), "retry", "--reason", "NO ROUTING", "--by", "ops"],
    )
    assert retried.exit_code == 0, retried.output
    assert retried.stdout.count("goes through routing again") == 2
    deliver(routed, servers)
    assert servers["sandbox"].puts == 2
    left = runner.invoke(app, ["exceptions", "--config", str(routed), "groups"])
    assert left.stdout.strip() == "No open exceptions."


def test_retry_needs_ids_or_a_reason(tmp_path: Path) -> None:
    file = write_config(tmp_path, routed=True)
    result = runner.invoke(app, ["exceptions", "--config", str(file), "retry"])
    assert result.exit_code == 2
    assert "Name exception ids or a --reason." in result.output


def test_the_same_cause_reads_the_same_for_every_record() -> None:
    from central.exception_queue import group_of

    first = group_of("line 3: quantity 0.65 is not whole")
    assert first == group_of("line 12: quantity 1.250 is not whole")
    assert first == "line #: quantity # is not whole"
    assert group_of("no price book entry in 01s0000001AAA for SKU SKU-PEN-RED") != group_of(
        "no price book entry in 01s0000001AAA for SKU SKU-PEN-BLUE"
    ), "a different SKU is a different fix"


def test_the_config_goes_before_or_after_the_subcommand_or_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = write_config(tmp_path, routed=False)
    seed(file)
    deliver(file, Servers())
    before = runner.invoke(app, ["exceptions", "--config", str(file), "list", "--json"])
    after = runner.invoke(app, ["exceptions", "list", "--config", str(file), "--json"])
    assert (before.exit_code, after.exit_code) == (0, 0), after.output
    ids = [r["id"] for r in json.loads(before.stdout)]
    assert [r["id"] for r in json.loads(after.stdout)] == ids
    assert len(ids) == 2
    assert runner.invoke(app, ["exceptions", "list", "--help"]).exit_code == 0
    monkeypatch.setenv("TILLBRIDGE_CONFIG", str(file))
    from_env = runner.invoke(app, ["exceptions", "list", "--json"])
    assert from_env.exit_code == 0, from_env.output
    assert [r["id"] for r in json.loads(from_env.stdout)] == ids
    checked = runner.invoke(app, ["config", "check"])
    assert checked.exit_code == 0, checked.output
    monkeypatch.setenv("TILLBRIDGE_CONFIG", str(tmp_path / "missing.toml"))
    missing = runner.invoke(app, ["config", "check"])
    assert missing.exit_code == 2
    assert "missing.toml" in missing.output
