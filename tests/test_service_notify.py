"""Both daemons speak the service manager's notify protocol over a real datagram socket:
READY=1 once they work, WATCHDOG=1 while healthy, STOPPING=1 on SIGTERM, then exit 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto

BIN = Path(sys.executable).parent


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    try:
        yield sock, path
    finally:
        sock.close()


def wait_for_message(sock: socket.socket, wanted: str, timeout: float = 20) -> list[str]:
    """Messages received until one holds the line `wanted`."""
    seen: list[str] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            continue
        seen.append(data)
        if wanted in data.splitlines():
            return seen
    raise AssertionError(f"{wanted!r} not received within {timeout}s; got {seen}")


def start(program: str, config: Path, path: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [str(BIN / program), "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_cleanly(process: subprocess.Popen[bytes], sock: socket.socket) -> None:
    process.send_signal(signal.SIGTERM)
    wait_for_message(sock, "STOPPING=1")
    assert process.wait(30) == 0


def test_the_agent_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    (tmp_path / "pos").mkdir()
    config = tmp_path / "agent.toml"
    config.write_text(
        '[agent]\nstore = "0042"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        '[agent.broker]\nurl = "mqtt://127.0.0.1:1"\n'
        "[agent.uplink]\nheartbeat_seconds = 0.5\n"
        f'[[agent.sources]]\nname = "pos"\npath = "{tmp_path / "pos"}"\n'
    )
    process = start("tillbridge-agent", config, path)
    try:
        ready = wait_for_message(sock, "READY=1")
        assert any("STATUS=store 0042" in m for m in ready)
        wait_for_message(sock, "WATCHDOG=1")  # the broker is away; the agent is still healthy
        stop_cleanly(process, sock)
    finally:
        if process.poll() is None:
            process.kill()


def test_the_relay_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str], mosquitto: Mosquitto
) -> None:
    sock, path = notify_socket
    config = tmp_path / "central.toml"
    config.write_text(
        f'[central]\nrelay_id = "relay-n"\ndata_dir = "{tmp_path}"\n'
        f'[central.broker]\nurl = "{mosquitto.url}"\n'
        f'[central.inbox]\nurl = "sqlite:///{tmp_path / "inbox.db"}"\n'
    )
    process = start("tillbridge-central", config, path)
    try:
        ready = wait_for_message(sock, "READY=1")
        assert any("relay relay-n" in m for m in ready)
        wait_for_message(sock, "WATCHDOG=1")
        stop_cleanly(process, sock)
    finally:
        if process.poll() is None:
            process.kill()
