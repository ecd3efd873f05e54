"""Field-support commands on real files and a real broker: doctor says what is wrong and
how to fix it, logs filters the JSON log files, and a support bundle carries no secret,
card number or customer contact."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_agent_config
from agent.support import doctor, parse_since, read_logs
from common.logs import bind, configure_logging
from tests.support.mosquitto import Mosquitto

BIN = Path(sys.executable).parent / "tillbridge-agent"
PASSWORD = "s3cret-Pa55word-do-not-leak"
PAN = "4111111111111111"
EMAIL = "ann.customer@example.com"


def write_config(tmp_path: Path, broker_url: str) -> Path:
    (tmp_path / "pos").mkdir(exist_ok=True)
    (tmp_path / "mqtt_password").write_text(PASSWORD + "\n")
    (tmp_path / "mqtt_password").chmod(0o600)  # as provision-store writes it
    config = tmp_path / "agent.toml"
    config.write_text(
        '[agent]\nstore = "0042"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[agent.broker]\nurl = "{broker_url}"\nusername = "0042"\n'
        f'password_file = "{tmp_path / "mqtt_password"}"\n'
        f'[[agent.sources]]\nname = "pos"\npath = "{tmp_path / "pos"}"\n'
    )
    return config


def test_doctor_passes_on_a_healthy_store(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = load_agent_config(write_config(tmp_path, mosquitto.url))
    asyncio.run(_one_pending_record(config))
    checks = doctor(config)
    assert [c.name for c in checks if not c.ok] == []
    (database,) = [c for c in checks if c.name == "outbox database"]
    assert database.detail.endswith(": ok, 1 records not yet acknowledged")
    assert {c.name for c in checks} >= {
        "config",
        "data folder",
        "source pos",
        "broker",
        "free disk",
    }


async def _one_pending_record(config: AgentConfig) -> None:
    from agent.outbox import Outbox
    from agent.sources import IngestFile
    from tests.agent.test_outbox import sale

    box = await Outbox.open(
        config.outbox_path, config.outbox, key_file=config.data_dir / "outbox.key"
    )
    try:
        await box.ingest(IngestFile("pos", "a", "a", "a", 1), iter([sale("1")]))
    finally:
        await box.close()


def test_doctor_names_each_problem_with_its_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path, "mqtt://127.0.0.1:1")
    (tmp_path / "pos").rmdir()
    result = subprocess.run(
        [str(BIN), "doctor", "--config", str(config), "--timeout", "2"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("✗ source pos:") for line in lines)
    assert any(line.startswith("✗ broker:") for line in lines)
    assert any(line.startswith("✓ data folder:") for line in lines)
    assert sum(line.startswith("    fix: ") for line in lines) == 2
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.usefixtures("restore_logging")
def test_logs_filter_by_time_level_and_correlation(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "agent.log"
    configure_logging(level="debug", file=log_file, console=False)
    log = logging.getLogger("tillbridge.agent.test")
    with bind(correlation_id="c-1"):
        log.info("File ingested.", extra={"records": 3})
        log.warning("File refused and quarantined.", extra={"reason": "bad number"})
    with bind(correlation_id="c-2"):
        log.error("Outbox commit failed.")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert [e["msg"] for e in read_logs(log_file, correlation="c-1")] == [
        "File ingested.",
        "File refused and quarantined.",
    ]
    assert [e["msg"] for e in read_logs(log_file, level="warning")] == [
        "File refused and quarantined.",
        "Outbox commit failed.",
    ]
    later = datetime.now(UTC) + timedelta(hours=2)
    assert list(read_logs(log_file, since=parse_since("1h"), now=later)) == []
    assert len(list(read_logs(log_file, since=parse_since("1h")))) == 3
    # The usual aliases mean what they say; a level that is none is an error, not "all".
    assert list(read_logs(log_file, level="WARN")) == list(read_logs(log_file, level="warning"))
    assert [e["msg"] for e in read_logs(log_file, level="err")] == ["Outbox commit failed."]
    with pytest.raises(ValueError, match="unknown level 'loud'"):
        list(read_logs(log_file, level="loud"))


def test_a_support_bundle_carries_no_secret_card_number_or_contact(tmp_path: Path) -> None:
    config_file = write_config(tmp_path, "mqtt://127.0.0.1:1")
    config = load_agent_config(config_file)
    # A log that a careless line might have written, bypassing the logging filters.
    config.log_file.parent.mkdir(parents=True)
    config.log_file.write_text(
        json.dumps(
            {
                "ts": "2024-05-01T10:00:00+00:00",
                "level": "error",
                "logger": "x",
                "msg": f"card {PAN} for {EMAIL} password={PASSWORD}",
            }
        )
        + "\n"
    )
    quarantine = config.quarantine_dir
    quarantine.mkdir(parents=True)
    (quarantine / "a.xml.error.txt").write_text(f"Reason: bad card {PAN} of {EMAIL}\n")
    (config.data_dir / "status.json").write_text(json.dumps({"store": "0042", "email": EMAIL}))
    target = tmp_path / "bundle.zip"
    result = subprocess.run(
        [str(BIN), "bundle", "--config", str(config_file), "-o", str(target)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(target) as archive:
        names = set(archive.namelist())
        content = b"".join(archive.read(n) for n in names).decode()
    assert {"config.json", "status.json", "outbox.json", "versions.json", "agent.log"} <= names
    assert "quarantine/a.xml.error.txt" in names
    for secret in (PASSWORD, PAN, EMAIL):
        assert secret not in content
    assert "1111" in content  # the card's last four stay, for support to match a receipt
    assert '"store": "0042"' in content


def test_the_logs_command_refuses_a_level_it_does_not_know(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agent.cli import app
    from tests.agent.test_daemon import write_config

    config = write_config(tmp_path, "mqtt://127.0.0.1:1")
    runner = CliRunner()
    refused = runner.invoke(app, ["logs", "--config", str(config), "--level", "loud"])
    assert refused.exit_code == 2
    assert "--level: unknown level 'loud'" in refused.output
    taken = runner.invoke(app, ["logs", "--config", str(config), "--level", "warn"])
    assert taken.exit_code == 0, taken.output
