"""The relay as a process under hostile input: /healthz answers within a second and
SIGTERM stops it within ten, whatever one store sends; what it writes is the owner's only;
`doctor` names anything others could read."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from contract import Ack
from tests.support.mosquitto import Mosquitto
from tests.support.records import batch, sale_body, wait_for, wire
from tests.support.relay import TestAgent

BIN = Path(sys.executable).parent / "tillbridge-central"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(tmp_path: Path, broker_url: str, port: int) -> Path:
    data = tmp_path / "central-data"
    config = tmp_path / "central.toml"
    config.write_text(
        "[central]\n"
        'relay_id = "relay-hostile"\n'
        f'data_dir = "{data}"\n'
        "[central.broker]\n"
        f'url = "{broker_url}"\n'
        "[central.web]\n"
        f'listen = "127.0.0.1:{port}"\n'
        "[central.delivery]\n"
        "enabled = false\n"
    )
    return config


def _hostile() -> list[bytes]:
    """What one store's credentials can send, each once."""
    huge = sale_body("0066", "T1")
    huge["lines"][0]["description"] = "a" * (50 * 1024 * 1024)
    long_text = sale_body("0066", "T3")
    long_text["lines"][0]["description"] = "password" * 8000  # under the string limit
    top = batch("0066", [wire(9_223_372_036_854_775_807, sale_body("0066", "T2"))])
    many = batch(
        "0066", [wire(s, sale_body("0066", f"T{s}", total="1.001")) for s in range(2, 3000)]
    )
    return [
        gzip.compress(
            json.dumps(
                json.loads(batch("0066", [wire(1, huge)]).model_dump_json(by_alias=True))
            ).encode()
        ),
        b'{"records": [' + b"1," * (6 * 1024 * 1024) + b"1]}",
        top.model_dump_json(by_alias=True).encode(),
        many.model_dump_json(by_alias=True).encode(),
        batch("0066", [wire(3000, long_text)]).model_dump_json(by_alias=True).encode(),
        b"[" * 100_000,
    ]


async def test_health_and_sigterm_hold_whatever_one_store_sends(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    port = _free_port()
    config = _config(tmp_path, mosquitto.url, port)
    proc = subprocess.Popen(
        [str(BIN), "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def up() -> bool:
                try:
                    return (await client.get(url)).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up, timeout=30)
            honest = batch("0042", [wire(1, sale_body("0042", "T1"))])
            async with TestAgent(mosquitto.port) as agent:
                for payload in _hostile():
                    await agent.publish("0066", payload)
                await agent.publish("0042", honest.model_dump_json(by_alias=True).encode())
                slowest = 0.0
                deadline = time.monotonic() + 8
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    answer = await client.get(url)
                    slowest = max(slowest, time.monotonic() - started)
                    assert answer.status_code in (200, 503)
                    await asyncio.sleep(0.2)
                assert slowest < 1, slowest

                async def acked() -> list[Ack]:
                    return agent.acks_for(honest.batch_id)

                await wait_for(acked, timeout=20)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - started < 10
        # What the relay wrote is the owner's only.
        data = tmp_path / "central-data"
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for name in ("inbox.db", "web-session.key", "logs/central.log"):
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE((data / "logs").stat().st_mode) == 0o700
        log = (data / "logs" / "central.log").read_text()
        refusals = [line for line in log.splitlines() if "Records rejected" in line]
        assert len(refusals) <= 3  # one line per batch, not one per record
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_doctor_names_files_others_could_read(tmp_path: Path) -> None:
    data = tmp_path / "central-data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # noqa: S103 - the too-open folder doctor must name
    users = data / "web-users.json"
    users.write_text("{}")
    os.chmod(users, 0o644)
    config = tmp_path / "central.toml"
    config.write_text(f'[central]\ndata_dir = "{data}"\n')
    found = subprocess.run(
        [str(BIN), "doctor", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"FAIL too open: {data}: mode 0755, should be 0700" in found.stdout
    assert f"FAIL too open: {users}: mode 0644, should be 0600" in found.stdout
    os.chmod(data, 0o700)
    os.chmod(users, 0o600)
    fixed = subprocess.run(
        [str(BIN), "doctor", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert fixed.returncode == 0, fixed.stdout
    assert fixed.stdout.startswith("OK ")


def test_doctor_on_windows_says_it_did_not_check_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from central.cli import app
    from common import modes

    data = tmp_path / "central-data"
    data.mkdir()
    os.chmod(data, 0o755)  # noqa: S103 - too open, and on Windows not looked at
    config = tmp_path / "central.toml"
    config.write_text(f'[central]\ndata_dir = "{data}"\n')
    monkeypatch.setattr(modes, "_POSIX", False)  # Windows: a mode means "read-only" only
    result = CliRunner().invoke(app, ["doctor", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "NOTE modes not checked on Windows: check with icacls" in result.output
    assert str(data) in result.output
    assert result.output.splitlines()[-1].endswith("modes not checked on Windows")
    assert "modes private" not in result.output  # never claimed when not looked at
