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
    }
    assert "records" in doc["batch"]["properties"]
    assert doc["record"]["$defs"]["Transaction"]["properties"]["total"]["type"] == "string"


def test_import_contracts_list_every_agent_module() -> None:
    """The relay may import only contract: every other agent module must be forbidden."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    forbidden = set(
        next(c for c in contracts if c["source_modules"] == ["central"])["forbidden_modules"]
    )
    modules = {
        f"agent.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "agent").iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists())
        and p.name not in {"__init__.py", "contract", "_version.py", "py.typed"}
    }
    assert modules - forbidden == set()
