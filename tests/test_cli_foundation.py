"""The two console scripts, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


@pytest.mark.parametrize("program", ["tillbridge-agent", "tillbridge-central"])
def test_version(program: str) -> None:
    result = run(program, "--version")
    assert result.returncode == 0
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert result.stdout.strip() == f"{program} {version}"


@pytest.mark.parametrize("program", ["tillbridge-agent", "tillbridge-central"])
def test_config_check(program: str, tmp_path: Path) -> None:
    assert run(program, "config", "check", "--config", "config.example.toml").returncode == 0
    bad = tmp_path / "bad.toml"
    table = "agent" if program == "tillbridge-agent" else "central"
    bad.write_text(f'[{table}]\nstore = "1"\n[{table}.broker]\npasword_file = "x"\n')
    result = run(program, "config", "check", "--config", str(bad))
    assert result.returncode == 2
    assert f"{bad}: {table}.broker.pasword_file: unknown key" in result.stderr.splitlines()


def test_schema_prints_the_record_contract() -> None:
    result = run("tillbridge-agent", "schema")
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    kinds = doc["record"]["discriminator"]["mapping"]
    assert set(kinds) == {
        "sale",
        "return",
        "void",
        "cancel",
        "inventory",
        "end_of_day",
        "customer",
        "refused",
        "fulfillment",
    }
    assert "records" in doc["batch"]["properties"]
    assert set(doc["down_message"]["discriminator"]["mapping"]) == {
        "order",
        "order_cancel",
        "customer",
        "customer_purge",
        "item",
        "resync_done",
    }
    assert "messages" in doc["down_batch"]["properties"]
    assert "through" in doc["down_ack"]["properties"]
    assert doc["record"]["$defs"]["Transaction"]["properties"]["total"]["type"] == "string"


def test_import_contracts_cover_whole_packages() -> None:
    """The import rules name packages, never a hand-kept list of modules, so a module
    added to either program is covered the day it is written."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    kinds = {c["type"]: c for c in contracts}
    assert kinds["independence"]["modules"] == ["agent", "central"]
    assert kinds["layers"]["layers"] == ["agent | central", "common", "contract"]
    contract = kinds["forbidden"]
    assert contract["source_modules"] == ["contract"]
    assert {"agent", "central", "common"} <= set(contract["forbidden_modules"])
    listed = [
        m
        for c in contracts
        for key in ("modules", "source_modules", "forbidden_modules")
        for m in c.get(key, [])
    ]
    assert not [m for m in listed if m.startswith(("agent.", "central.", "common."))]
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"lab", "tests"}
    assert set(config["tool"]["importlinter"]["root_packages"]) == packages


def _command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group of a Click command tree, as the words that reach it."""
    found = [prefix]
    for name, sub in (getattr(command, "commands", None) or {}).items():
        found += _command_paths(sub, (*prefix, name))
    return found


@pytest.mark.parametrize("program", ["agent", "central"])
def test_help_reads_like_clicks_own(program: str) -> None:
    """No Python type names (`<bool>`, `<list[Path]>`, `{files}...`), lines wrapped at
    words within the terminal's width, and every docstring's words intact."""
    import importlib
    import inspect
    import re

    import typer
    from typer.testing import CliRunner

    app = importlib.import_module(f"{program}.cli").app
    root = typer.main.get_command(app)
    paths = _command_paths(root)
    assert len(paths) > 10
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (path, result.output)
        text = result.output
        assert not re.search(r"<[a-z][\w\[\], |]*>", text), (path, text)
        assert "{" not in text, (path, text)
        assert max(len(line) for line in text.splitlines()) <= 80, (path, text)
        command = root
        for word in path:
            command = command.commands[word]  # type: ignore[attr-defined]
        doc = inspect.cleandoc(getattr(command, "help", None) or "")
        if doc:
            # Rewrapped, never cut inside a word: the words come in the same order.
            assert " ".join(doc.split()) in " ".join(text.split()), (path, text)
