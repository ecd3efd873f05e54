"""The agent's commands as a Windows PC runs them: the event loop each gets (Python's
default there, the proactor, cannot watch sockets), a cp1252 console, a system proxy,
a service started in System32, and the self-test of the service modules."""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import ntpath
import os
import socket
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import agent.daemon  # noqa: F401 - imported as on any platform: its dependencies read sys.platform
from agent import selftest, support
from agent.cli import app, main
from agent.config import load_agent_config
from agent.support import Check
from common import runtime
from tests.agent.windows import FakeMsvcrt, become_windows, fake_acl

runner = CliRunner()


class ProactorLike(asyncio.SelectorEventLoop):
    """Python's default loop on Windows as the MQTT client meets it: no `add_reader`."""

    def add_reader(self, *args: Any) -> None:  # type: ignore[override]
        raise NotImplementedError

    def add_writer(self, *args: Any) -> None:  # type: ignore[override]
        raise NotImplementedError


class WindowsDefaultPolicy(asyncio.DefaultEventLoopPolicy):
    made = 0

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        WindowsDefaultPolicy.made += 1
        return ProactorLike()


@pytest.fixture
def windows_loops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[type]]:
    """Windows, where `asyncio.run` would give a proactor; the loop types commands ran on."""
    fake_acl(monkeypatch)
    WindowsDefaultPolicy.made = 0
    asyncio.set_event_loop_policy(WindowsDefaultPolicy())
    try:
        yield []
    finally:
        asyncio.set_event_loop_policy(None)


def write_config(tmp_path: Path, **extra: str) -> Path:
    (tmp_path / "pos").mkdir(exist_ok=True)
    config = tmp_path / "agent.toml"
    lines = ["[agent]", 'store = "0042"', f'data_dir = "{tmp_path / "data"}"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    lines += ["[[agent.sources]]", 'name = "pos"', f'path = "{tmp_path / "pos"}"']
    config.write_text("\n".join(lines) + "\n")
    return config


def seen_loop(loops: list[type]) -> None:
    loop = asyncio.get_running_loop()
    loops.append(type(loop))
    mine, theirs = socket.socketpair()
    try:
        loop.add_reader(mine.fileno(), lambda: None)  # what aiomqtt (paho) does
        loop.remove_reader(mine.fileno())
    finally:
        mine.close()
        theirs.close()


def run_on(loop_factory: Any, step: Any) -> Any:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(step)


@pytest.mark.usefixtures("restore_logging")
def test_run_gets_a_selector_loop(
    windows_loops: list[type], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from agent.daemon import Agent

    async def run(self: Agent, stop: asyncio.Event) -> None:
        seen_loop(windows_loops)

    monkeypatch.setattr(Agent, "run", run)
    monkeypatch.setattr(runtime, "stop_on_signals", lambda stop: None)
    result = runner.invoke(app, ["run", "--config", str(write_config(tmp_path))])
    assert result.exit_code == 0, result.output
    assert windows_loops == [asyncio.SelectorEventLoop]


def test_doctor_gets_a_selector_loop(
    windows_loops: list[type], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def broker(config: Any, wait: float) -> Check:
        seen_loop(windows_loops)
        return Check("broker", True, "connected")

    monkeypatch.setattr(support, "_broker_check", broker)
    runner.invoke(app, ["doctor", "--config", str(write_config(tmp_path))])
    assert windows_loops == [asyncio.SelectorEventLoop]


def test_replay_gets_a_selector_loop(
    windows_loops: list[type], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from agent import cli

    async def replay(cfg: Any, first: Any) -> tuple[int, int, int]:
        seen_loop(windows_loops)
        return 0, 0, 0

    monkeypatch.setattr(cli, "_replay", replay)
    FakeMsvcrt(monkeypatch)  # replay holds the data folder's lock
    config = str(write_config(tmp_path))
    result = runner.invoke(app, ["replay", "--config", config, "--since", "2024-05-01"])
    assert result.exit_code == 0, result.output
    assert windows_loops == [asyncio.SelectorEventLoop]


def test_self_test_gets_a_selector_loop(
    windows_loops: list[type], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def step(_: Path) -> str:
        seen_loop(windows_loops)
        return "ok"

    monkeypatch.setattr(selftest, "STEPS", [("loop", step)])
    result = runner.invoke(app, ["self-test"])
    assert result.exit_code == 0, result.output
    assert windows_loops == [asyncio.SelectorEventLoop]


def test_status_runs_no_proactor(windows_loops: list[type], tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "status.json").write_text(json.dumps({"store": "0042"}))
    config = write_config(tmp_path, status_listen="127.0.0.1:1")
    result = runner.invoke(app, ["status", "--config", str(config), "--json"])
    assert result.exit_code == 3, result.output  # read from the file: not running
    assert WindowsDefaultPolicy.made == 0


# -- output encoding ----------------------------------------------------------------------


def cp1252_console(monkeypatch: pytest.MonkeyPatch) -> io.BytesIO:
    """stdout as a redirected Windows console or a remote-management tool gives it."""
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="cp1252"))
    return raw


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["tillbridge-agent", *args])
    with pytest.raises(SystemExit) as done:
        main()
    sys.stdout.flush()
    return int(done.value.code or 0)


def test_doctor_prints_on_a_cp1252_console(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raw = cp1252_console(monkeypatch)
    checks = [
        Check("config", True, "valid"),
        Check("source pos", False, "C:\\Kasse\\Export ☃ is gone", "Create it ✓"),
    ]
    monkeypatch.setattr(support, "doctor", lambda cfg, broker_timeout, config_file=None: checks)
    code = run_main(monkeypatch, "doctor", "--config", str(write_config(tmp_path)))
    text = raw.getvalue().decode("cp1252")
    assert code == 1
    assert "OK config: valid" in text
    assert "FAIL source pos: C:\\Kasse\\Export ? is gone" in text


def test_self_test_prints_on_a_cp1252_console(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = cp1252_console(monkeypatch)

    async def step(_: Path) -> str:
        return "fine"

    monkeypatch.setattr(selftest, "STEPS", [("service", step)])
    assert run_main(monkeypatch, "self-test") == 0
    assert raw.getvalue().decode("cp1252") == "OK service: fine\n"


# -- status past a proxy ------------------------------------------------------------------


class StatusHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"store": "0042", "answered": True, "pid": 4242}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


def test_status_asks_the_running_agent_past_the_system_proxy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), StatusHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy that is not there
        config = write_config(tmp_path)
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "status.address").write_text(
            json.dumps({"listen": f"127.0.0.1:{server.server_port}", "pid": 4242})
        )
        result = runner.invoke(app, ["status", "--config", str(config), "--json"])
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1, result.output  # it answered; it says nothing of a broker
    assert json.loads(result.stdout)["answered_by"] == "running agent"


# -- paths --------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "Tillbridge"
    folder.mkdir()
    (folder / "mqtt_password").write_text("pw\n")
    (folder / "ca.pem").write_text("ca")
    config = folder / "agent.toml"
    config.write_text(
        '[agent]\nstore = "0042"\ndata_dir = "data"\n'
        '[agent.outbox]\nkey_file = "keys/outbox.key"\n'
        '[agent.logging]\nfile = "logs/agent.log"\n'
        '[agent.broker]\nurl = "mqtts://127.0.0.1:8883"\npassword_file = "mqtt_password"\n'
        'ca_file = "ca.pem"\n'
        '[[agent.sources]]\nname = "pos"\npath = "export"\n'
        '[[agent.sources]]\nname = "xstore"\npath = "C:/xstore/poslog-out"\n'
    )
    system32 = tmp_path / "System32"
    system32.mkdir()
    monkeypatch.chdir(system32)  # where a service starts
    cfg = load_agent_config(config)
    assert cfg.data_dir == folder / "data"
    assert cfg.sources[0].path == folder / "export"
    assert str(cfg.sources[1].path) == "C:/xstore/poslog-out"  # a Windows path, as written
    assert cfg.outbox.key_file == folder / "keys" / "outbox.key"
    assert cfg.log_file == folder / "logs" / "agent.log"
    assert cfg.broker.password_file == folder / "mqtt_password"
    assert cfg.broker.ca_file == folder / "ca.pem"
    assert cfg.broker.password is not None
    assert cfg.broker.password.get_secret_value() == "pw"


def test_doctor_names_a_mapped_drive_a_service_cannot_see(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from agent.sources import _share

    config = write_config(tmp_path)
    cfg = load_agent_config(config)
    cfg.sources[0].path = Path("Z:/Kasse/Export")
    fake_acl(monkeypatch)
    monkeypatch.setattr(os.path, "splitdrive", ntpath.splitdrive)
    monkeypatch.setattr(_share, "_win_drive_type", lambda root: _share.DRIVE_NO_ROOT_DIR)
    (check,) = [c for c in support._folder_checks(cfg) if c.name == "source pos"]
    assert not check.ok
    assert "drive Z: does not exist for the account the agent runs as" in check.detail
    assert "UNC path" in check.fix


# -- self-test of the service -------------------------------------------------------------


def test_self_test_checks_the_service_modules_on_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    become_windows(monkeypatch)
    for name in selftest.WINDOWS_SERVICE_MODULES:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    detail = run_on(asyncio.SelectorEventLoop, selftest._service(Path()))
    assert f"{len(selftest.WINDOWS_SERVICE_MODULES)} pywin32 modules" in detail
    monkeypatch.setitem(sys.modules, "win32security", None)  # not bundled
    with pytest.raises(ImportError):
        run_on(asyncio.SelectorEventLoop, selftest._service(Path()))


def test_self_test_refuses_a_loop_that_cannot_watch_sockets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    become_windows(monkeypatch)
    for name in selftest.WINDOWS_SERVICE_MODULES:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    with pytest.raises(RuntimeError, match="ProactorLike"):
        run_on(ProactorLike, selftest._service(Path()))
