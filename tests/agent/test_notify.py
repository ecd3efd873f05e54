"""The notify protocol against a real datagram socket, as systemd listens."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from common.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_ready_status_watchdog_stopping(listener, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    path, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier()
    assert notifier.watchdog_seconds == 30
    assert notifier.ready("Taking files.")
    assert sock.recv(4096) == b"READY=1\nSTATUS=Taking files."
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_namespace_socket() -> None:
    name = f"tillbridge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier("@" + name).status("Draining 10 records.")
        assert sock.recv(4096) == b"STATUS=Draining 10 records."


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready()


def test_a_vanished_socket_does_not_crash(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone.sock")).watchdog()
