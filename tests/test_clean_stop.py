"""A clean stop is quiet: the agent and the relay, run as processes against a real
Mosquitto with records flowing, stopped with SIGTERM, log no ERROR line (no cancelled
heartbeat job, no "Future exception was never retrieved") and exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto, free_port
from tests.support.records import wait_for

BIN = Path(sys.executable).parent


def _configs(tmp_path: Path, broker_url: str) -> tuple[Path, Path]:
    relay = tmp_path / "central.toml"
    relay.write_text(
        "[central]\n"
        'relay_id = "relay-stop"\n'
        f'data_dir = "{tmp_path / "relay"}"\n'
        "[central.broker]\n"
        f'url = "{broker_url}"\n'
        "[central.web]\n"
        f'listen = "127.0.0.1:{free_port()}"\n'
        "[central.inbox]\n"
        f'url = "sqlite:///{tmp_path / "inbox.db"}"\n'
    )
    (tmp_path / "pos").mkdir()
    agent = tmp_path / "agent.toml"
    agent.write_text(
        "[agent]\n"
        'store = "0042"\n'
        f'data_dir = "{tmp_path / "store"}"\n'
        'status_listen = "127.0.0.1:0"\n'
        "[agent.broker]\n"
        f'url = "{broker_url}"\n'
        "[agent.uplink]\n"
        "heartbeat_seconds = 0.2\n"
        "[[agent.sources]]\n"
        'name = "counts"\n'
        f'path = "{tmp_path / "pos"}"\n'
        'format = "inventory"\n'
        'include = ["**/*.csv"]\n'
        "settle_seconds = 0.1\n"
    )
    return relay, agent


def _start(program: str, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / program), "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _entries(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["in_order", "ctrl_c"])
async def test_a_clean_stop_logs_no_error(mosquitto: Mosquitto, tmp_path: Path, how: str) -> None:
    """`in_order`: SIGTERM to the agent, then the relay. `ctrl_c`: SIGINT to the agent,
    the relay and the broker at once, as Ctrl-C in a terminal sends it to them all (the
    broker goes away while the programs stop)."""
    relay_config, agent_config = _configs(tmp_path, mosquitto.url)
    agent_log = tmp_path / "store" / "logs" / "agent.log"
    relay_log = tmp_path / "relay" / "logs" / "central.log"
    relay = _start("tillbridge-central", relay_config)

    async def subscribed() -> bool:
        return any(e["msg"] == "Connected to the broker." for e in _entries(relay_log))

    await wait_for(subscribed, timeout=30)
    agent = _start("tillbridge-agent", agent_config)
    try:
        (tmp_path / "pos" / "counts.csv").write_text(
            "sku,location,qty,counted_at\n1001,FLOOR,3,2024-03-15T21:30:00\n"
        )

        async def acknowledged() -> bool:
            return any(e["msg"] == "Batch acknowledged." for e in _entries(relay_log))

        await wait_for(acknowledged, timeout=30)
        await asyncio.sleep(1)  # a few heartbeats while both run
        if how == "ctrl_c":
            assert mosquitto.process is not None
            for process in (agent, relay, mosquitto.process):
                process.send_signal(signal.SIGINT)
        else:
            for process in (agent, relay):
                process.send_signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(p.wait, 30) for p in (agent, relay)]
    finally:
        for process in (agent, relay):
            if process.poll() is None:
                process.kill()
                process.wait(10)
    stderr = {
        "agent": agent.stderr.read() if agent.stderr else "",
        "relay": relay.stderr.read() if relay.stderr else "",
    }
    assert codes == [0, 0], stderr
    for log in (agent_log, relay_log):
        entries = _entries(log)
        assert any(e["msg"] in ("Agent stopped.", "Relay stopped.") for e in entries), log
        errors = [e for e in entries if str(e["level"]).upper() in ("ERROR", "CRITICAL")]
        assert errors == [], errors
    for name, text in stderr.items():
        assert "ERROR" not in text, (name, text)
        assert "Traceback" not in text, (name, text)
        assert "Future exception was never retrieved" not in text, (name, text)
