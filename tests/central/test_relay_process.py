"""`tillbridge-central run` and `stats` as processes: a relay killed with SIGKILL between
commit and ack loses nothing and doubles nothing; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from central.inbox import open_inbox
from contract import encode_batch
from tests.support.mosquitto import Mosquitto
from tests.support.records import batch, sale_body, wait_for, wire
from tests.support.relay import TestAgent

BIN = Path(sys.executable).parent / "tillbridge-central"


def _write_config(tmp_path: Path, broker_url: str) -> Path:
    config = tmp_path / "central.toml"
    config.write_text(
        "[central]\n"
        'relay_id = "relay-kill"\n'
        f'data_dir = "{tmp_path}"\n'
        "[central.broker]\n"
        f'url = "{broker_url}"\n'
        "[central.inbox]\n"
        f'url = "sqlite:///{tmp_path / "inbox.db"}"\n'
        # This test is about intake; delivery would route the records on at once.
        "[central.delivery]\n"
        "enabled = false\n"
    )
    return config


def _start(config: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN), "run", "--config", str(config)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _log_lines(tmp_path: Path, message: str) -> int:
    log = tmp_path / "logs" / "central.log"
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if json.loads(line)["msg"] == message)


async def _connected(tmp_path: Path, times: int) -> None:
    async def check() -> bool:
        return _log_lines(tmp_path, "Connected to the broker.") >= times

    await wait_for(check, timeout=20)


async def test_relay_killed_between_commit_and_ack_doubles_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = _write_config(tmp_path, mosquitto.url)
    sent = batch("0042", [wire(s, sale_body("0042", f"T{s}")) for s in (1, 2, 3)])
    first = _start(config, TILLBRIDGE_CENTRAL__INTAKE__ACK_DELAY_SECONDS="60")
    second: subprocess.Popen[bytes] | None = None
    try:
        await _connected(tmp_path, 1)
        async with TestAgent(mosquitto.port) as agent:
            await agent.publish("0042", encode_batch(sent))
            inbox = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
            try:

                async def committed() -> bool:
                    return (await inbox.stats())["records"] == 3

                await wait_for(committed, timeout=20)
            finally:
                await inbox.close()
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            assert agent.acks == []
            # No ack came, so the agent sends the batch again; the broker keeps it for
            # the relay's persistent session until the relay is back.
            await agent.publish("0042", encode_batch(sent))
            second = _start(config)
            await _connected(tmp_path, 2)

            async def acked() -> list[object]:
                return agent.acks_for(sent.batch_id)

            (ack,) = await wait_for(acked, timeout=20)
            assert (ack.committed, ack.duplicates) == ([], [1, 2, 3])
        stats = subprocess.run(
            [str(BIN), "stats", "--config", str(config), "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert stats.returncode == 0, stats.stderr
        data = json.loads(stats.stdout)
        assert list(data)[:5] == ["records", "by_state", "stores", "exceptions", "duplicates"]
        assert (data["records"], data["stores"], data["exceptions"], data["duplicates"]) == (
            3,
            1,
            0,
            3,
        )
        assert data["by_state"]["received"] == 3
        table = subprocess.run(
            [str(BIN), "stats", "--config", str(config)], capture_output=True, text=True, timeout=30
        )
        assert table.returncode == 0
        assert "duplicates" in table.stdout
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
        assert _log_lines(tmp_path, "Relay stopped.") == 1
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        await asyncio.sleep(0)
