"""The service runner behind the Windows service, on any platform: the daemon runs on a
selector loop in the calling thread and stops cleanly when another thread asks."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.service import ServiceRunner, default_config_path

pytestmark = pytest.mark.usefixtures("restore_logging")  # the runner sets up logging


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


def run_in_thread(runner: ServiceRunner) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(runner.run()), daemon=True)
    thread.start()
    return thread, result


def test_the_real_agent_runs_and_stops_from_another_thread(tmp_path: Path) -> None:
    runner = ServiceRunner(write_config(tmp_path))
    thread, result = run_in_thread(runner)
    assert runner.started.wait(15)
    status = tmp_path / "data" / "status.json"
    for _ in range(200):
        if status.exists():
            break
        threading.Event().wait(0.05)
    assert status.exists()  # it really ran: the daemon wrote its status
    runner.stop()  # what SvcStop does, from the service control thread
    thread.join(30)
    assert result == [0]


def test_a_stop_before_the_loop_started_is_not_lost(tmp_path: Path) -> None:
    seen: list[str] = []

    def daemon(config: AgentConfig, config_file: Path):  # type: ignore[no-untyped-def]
        async def run(stop: asyncio.Event) -> None:
            assert isinstance(asyncio.get_running_loop(), asyncio.SelectorEventLoop)
            await asyncio.wait_for(stop.wait(), 10)
            seen.append(config.store)

        return run

    runner = ServiceRunner(write_config(tmp_path), daemon=daemon)
    runner.stop()  # the service manager may ask before the loop is up
    thread, result = run_in_thread(runner)
    thread.join(15)
    assert result == [0]
    assert seen == ["0042"]


def test_a_failing_daemon_gives_exit_code_1(tmp_path: Path) -> None:
    def daemon(config: AgentConfig, config_file: Path):  # type: ignore[no-untyped-def]
        async def run(stop: asyncio.Event) -> None:
            raise RuntimeError("outbox folder is read-only")

        return run

    assert ServiceRunner(write_config(tmp_path), daemon=daemon).run() == 1


def test_an_invalid_config_gives_exit_code_2(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nstoer = "0042"\n')
    assert ServiceRunner(config).run() == 2


def test_the_config_path_is_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TILLBRIDGE_CONFIG", "relative/agent.toml")
    assert default_config_path().is_absolute()
    monkeypatch.delenv("TILLBRIDGE_CONFIG")
    monkeypatch.setenv("PROGRAMDATA", str(tmp_path))
    assert default_config_path() == (tmp_path / "Tillbridge" / "agent.toml").resolve()
