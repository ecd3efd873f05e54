"""The Windows service with pywin32 stood in for (`tests.agent.windows.FakeScm`): what
install, update and uninstall set, what reaches the Event Log, how a stop is reported
and bounded, and the data folder's lock under Windows' byte-range locks."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from agent import service
from agent.config import AgentConfig
from agent.lock import AlreadyRunning, data_dir_lock
from agent.service import ServiceRunner, report_progress
from tests.agent.windows import FakeMsvcrt, FakeScm

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def scm(monkeypatch: pytest.MonkeyPatch) -> FakeScm:
    fake = FakeScm()
    fake.install(monkeypatch)
    return fake


def write_config(tmp_path: Path) -> Path:
    (tmp_path / "pos").mkdir(exist_ok=True)
    config = tmp_path / "agent.toml"
    config.write_text(
        '[agent]\nstore = "0042"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        '[agent.broker]\nurl = "mqtt://127.0.0.1:1"\n'
        f'[[agent.sources]]\nname = "pos"\npath = "{tmp_path / "pos"}"\n'
    )
    return config


@pytest.mark.parametrize(
    "argv",
    [
        ["svc", "install"],
        ["svc", "--wait", "10", "install"],  # options before the command
        ["svc", "--perfmonini=x.ini", "install"],
        ["svc", "update"],
    ],
)
def test_install_sets_automatic_start_and_recovery_on_any_failure(
    scm: FakeScm, argv: list[str]
) -> None:
    assert service.main(argv) == 0
    assert scm.calls[0] == ("HandleCommandLine", "TillbridgeAgentService", argv)
    (change,) = [c for c in scm.calls if c[0] == "ChangeServiceConfig"]
    assert change[3] == service.SERVICE_AUTO_START
    assert change[9] == "NT SERVICE\\TillbridgeAgent"  # the virtual account, no password
    assert change[10] == ""
    config2 = scm.config2()
    assert config2[service.SERVICE_CONFIG_DELAYED_AUTO_START_INFO] is True
    assert config2[service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG] is True  # exit 1 or 2 too
    actions = config2[service.SERVICE_CONFIG_FAILURE_ACTIONS]["Actions"]
    assert actions == [(service.SC_ACTION_RESTART, ms) for ms in (10_000, 30_000, 60_000)]
    assert "POS exports" in config2[service.SERVICE_CONFIG_DESCRIPTION]
    assert config2[service.SERVICE_CONFIG_SERVICE_SID_INFO] == service.SERVICE_SID_TYPE_UNRESTRICTED
    assert config2[service.SERVICE_CONFIG_PRESHUTDOWN_INFO] / 1000 > service.STOP_SECONDS


def test_an_account_and_start_type_given_on_the_command_line_are_kept(scm: FakeScm) -> None:
    argv = ["svc", "--username", ".\\posagent", "--password", "pw", "--startup", "manual"]
    assert service.main([*argv, "install"]) == 0
    (change,) = [c for c in scm.calls if c[0] == "ChangeServiceConfig"]
    assert change[3] == service.SERVICE_NO_CHANGE
    assert change[9] is None
    assert scm.config2()[service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG] is True


def test_other_commands_change_nothing(scm: FakeScm) -> None:
    assert service.main(["svc", "start"]) == 0
    assert [c[0] for c in scm.calls] == ["HandleCommandLine"]


@pytest.mark.parametrize("command", ["uninstall", "remove"])
def test_uninstall_stops_the_service_first_and_leaves_the_data(scm: FakeScm, command: str) -> None:
    assert service.main(["svc", command]) == 0
    assert [c[0] for c in scm.calls] == ["StopService", "WaitForServiceStatus", "RemoveService"]


def test_uninstall_of_a_stopped_service_removes_it(scm: FakeScm) -> None:
    scm.running = False
    assert service.main(["svc", "uninstall"]) == 0
    assert [c[0] for c in scm.calls] == ["StopService", "RemoveService"]


def test_a_config_error_reaches_the_event_log_with_key_and_file(
    scm: FakeScm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nstore = "0042"\nstoer = "x"\n')
    monkeypatch.setenv("TILLBRIDGE_CONFIG", str(config))
    host = service._service_class()(["TillbridgeAgent"])
    with pytest.raises(SystemExit) as exit_:
        host.SvcDoRun()
    assert exit_.value.code == 2  # a failure: Windows applies the recovery actions
    errors = [text for kind, text in scm.events if kind == "error"]
    assert any(f"{config}: agent.stoer: unknown key" in text for text in errors)


def test_a_start_failure_reaches_the_event_log(tmp_path: Path) -> None:
    reported: list[str] = []

    def daemon(config: AgentConfig, config_file: Path):  # type: ignore[no-untyped-def]
        async def run(stop: asyncio.Event) -> None:
            raise PermissionError(13, "Access is denied", str(tmp_path / "data"))

        return run

    runner = ServiceRunner(write_config(tmp_path), daemon=daemon, report_error=reported.append)
    assert runner.run() == 1
    (text,) = reported
    assert "Access is denied" in text
    assert str(tmp_path / "agent.toml") in text


def test_preshutdown_and_stop_report_progress_until_the_agent_stopped(
    scm: FakeScm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "PROGRESS_SECONDS", 0.05)
    monkeypatch.setenv("TILLBRIDGE_CONFIG", str(write_config(tmp_path)))
    host = service._service_class()(["TillbridgeAgent"])
    assert host.GetAcceptedControls() & service.SERVICE_ACCEPT_PRESHUTDOWN

    def slow(config: AgentConfig, config_file: Path):  # type: ignore[no-untyped-def]
        async def run(stop: asyncio.Event) -> None:
            await stop.wait()
            await asyncio.sleep(0.5)  # finishing the batch in flight

        return run

    host.runner._daemon = slow
    thread = threading.Thread(target=host.runner.run, daemon=True)
    thread.start()
    assert host.runner.started.wait(10)
    host.SvcOtherEx(service.SERVICE_CONTROL_PRESHUTDOWN, 0, None)
    host.SvcStop()  # a second request changes nothing
    thread.join(10)
    assert host.runner.finished.wait(5)
    time.sleep(0.1)
    pending = [s for s in host.statuses if s[0] == service.SERVICE_STOP_PENDING]
    assert len(pending) >= 3  # reported again and again, not once


def test_progress_is_reported_until_finished_or_the_limit() -> None:
    finished = threading.Event()
    calls: list[float] = []
    timer = threading.Timer(0.3, finished.set)
    timer.start()
    assert report_progress(finished, lambda: calls.append(time.monotonic()), every=0.05)
    assert len(calls) >= 3
    assert not report_progress(threading.Event(), lambda: None, every=0.01, limit=0.05)


def test_a_daemon_that_does_not_stop_is_cancelled_at_the_deadline(tmp_path: Path) -> None:
    cleaned: list[bool] = []

    def stuck(config: AgentConfig, config_file: Path):  # type: ignore[no-untyped-def]
        async def run(stop: asyncio.Event) -> None:
            try:
                await asyncio.sleep(3600)  # ignores the stop
            finally:
                cleaned.append(True)  # the outbox would be closed here

        return run

    runner = ServiceRunner(write_config(tmp_path), daemon=stuck, stop_seconds=0.3)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(runner.run()), daemon=True)
    thread.start()
    assert runner.started.wait(10)
    runner.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert result == [0]
    assert cleaned == [True]


def test_the_host_refuses_to_run_off_windows() -> None:
    assert service.main(["svc", "install"]) == 2


def test_a_held_lock_says_already_running_on_windows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    FakeMsvcrt(monkeypatch)
    first = data_dir_lock(tmp_path)
    first.__enter__()
    with pytest.raises(AlreadyRunning) as held, data_dir_lock(tmp_path):
        pass
    first.__exit__(None, None, None)
    assert "is in use by pid" in str(held.value)
    with data_dir_lock(tmp_path):  # released when the first holder closed
        pass
