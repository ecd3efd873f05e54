"""`tillbridge-agent self-test` from source (the frozen build runs it in test_build.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent import selftest
from agent.cli import app
from agent.parsers import compiled

runner = CliRunner()


def test_every_check_passes_here() -> None:
    result = runner.invoke(app, ["self-test", "--config", "config.example.toml"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "✓ config",
        "✓ dependencies",
        "✓ time zones",
        "✓ parsers",
        "✓ scheduler",
        "✓ outbox and native watcher",
        "✓ outbox and polling watcher",
        "✓ service",
    ]
    reader = "compiled" if compiled() else "plain Python"
    assert f"POSLog reader {reader}" in result.stdout


def test_a_failing_check_is_shown_and_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(_: Path) -> str:
        raise ImportError("No module named 'win32timezone'")

    monkeypatch.setattr(selftest, "STEPS", [*selftest.STEPS[:1], ("service", broken)])
    result = runner.invoke(app, ["self-test"])
    assert result.exit_code == 1
    assert "✓ dependencies" in result.stdout
    assert "✗ service: ImportError: No module named 'win32timezone'" in result.stdout


def test_a_bad_config_fails_its_check_by_key(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text('[agent]\nstore = "0042"\nstroe = "x"\n', encoding="utf-8")
    result = runner.invoke(app, ["self-test", "--config", str(bad)])
    assert result.exit_code == 1
    assert f"✗ config: {bad}: agent.stroe: unknown key" in result.stdout
