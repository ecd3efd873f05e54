"""Secrets and data readable by the agent alone: owner-only modes on this system, ACLs on
Windows (through the backend `agent._acl` chooses, a fake here), and `doctor` naming
what is exposed and the command that fixes it."""

from __future__ import annotations

import asyncio
import stat
import threading
from pathlib import Path

import pytest

from agent import _acl
from agent._seal import load_or_create_key
from agent.config import load_agent_config
from agent.daemon import protect_data
from agent.service import ServiceRunner
from agent.support import _permissions_check
from tests.agent.windows import fake_acl


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_config(tmp_path: Path, *, password: bool = True) -> Path:
    (tmp_path / "pos").mkdir(exist_ok=True)
    (tmp_path / "mqtt_password").write_text("s3cret\n")
    config = tmp_path / "agent.toml"
    config.write_text(
        '[agent]\nstore = "0042"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        '[agent.broker]\nurl = "mqtt://127.0.0.1:1"\n'
        + (f'password_file = "{tmp_path / "mqtt_password"}"\n' if password else "")
        + f'[[agent.sources]]\nname = "pos"\npath = "{tmp_path / "pos"}"\n'
    )
    return config


def test_the_key_is_protected_by_an_acl_on_windows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    acl = fake_acl(monkeypatch)
    key = tmp_path / "outbox.key"
    load_or_create_key(key)
    assert acl.protected == {key: False}
    acl.protected.clear()
    acl.exposed[key] = "readable by BUILTIN\\Users"  # someone loosened it
    load_or_create_key(key)
    assert acl.protected == {key: False}


def test_the_data_folders_and_logs_are_protected_on_windows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = load_agent_config(write_config(tmp_path))
    for folder in (config.archive_dir, config.quarantine_dir, config.log_file.parent):
        folder.mkdir(parents=True)
    acl = fake_acl(monkeypatch)
    protect_data(config)
    assert acl.protected == {
        config.data_dir: True,
        config.archive_dir: True,
        config.quarantine_dir: True,
        config.log_file.parent: True,
        tmp_path / "mqtt_password": False,
    }


def test_a_log_file_elsewhere_is_protected_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = load_agent_config(write_config(tmp_path))
    config.logging.file = tmp_path / "shared-logs" / "agent.log"
    config.logging.file.parent.mkdir()
    config.logging.file.write_text("")
    acl = fake_acl(monkeypatch)
    protect_data(config)
    assert acl.protected[config.logging.file] is False
    assert config.logging.file.parent not in acl.protected


@pytest.mark.usefixtures("restore_logging")
def test_after_a_run_the_data_is_the_agents_alone(tmp_path: Path) -> None:
    config = write_config(tmp_path, password=False)
    runner = ServiceRunner(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    assert runner.started.wait(15)
    data = tmp_path / "data"
    for _ in range(200):
        if (data / "status.json").exists():
            break
        threading.Event().wait(0.05)
    runner.stop()
    thread.join(30)
    for folder in (data, data / "archive", data / "quarantine", data / "logs"):
        assert mode(folder) == 0o700, folder
    assert mode(data / "outbox.key") == 0o600


def test_doctor_names_what_is_exposed_and_the_fix(tmp_path: Path) -> None:
    config = load_agent_config(write_config(tmp_path))
    config.data_dir.mkdir()
    (tmp_path / "mqtt_password").chmod(0o644)
    config.data_dir.chmod(0o755)
    check = _permissions_check(config)
    assert not check.ok
    assert f"password file {tmp_path / 'mqtt_password'}: open to its group and other users" in (
        check.detail
    )
    assert f"chmod 600 {tmp_path / 'mqtt_password'}" in check.fix
    assert f"chmod 700 {config.data_dir}" in check.fix
    (tmp_path / "mqtt_password").chmod(0o600)
    config.data_dir.chmod(0o700)
    assert _permissions_check(config).ok


def test_doctor_checks_acls_on_windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = load_agent_config(write_config(tmp_path))
    config.data_dir.mkdir()
    asyncio.run(asyncio.to_thread(load_or_create_key, config.data_dir / "outbox.key"))
    acl = fake_acl(monkeypatch)  # Windows, where the modes above mean nothing
    check = _permissions_check(config)
    assert not check.ok
    assert "readable by BUILTIN\\Users" in check.detail
    assert f'icacls "{tmp_path / "mqtt_password"}"' in check.fix
    for path in (config.data_dir, config.data_dir / "outbox.key", tmp_path / "mqtt_password"):
        acl.protect(path, folder=path.is_dir())
    check = _permissions_check(config)
    assert check.ok
    # What Windows leaves unchecked is said, not passed over: owners and the config's ACL.
    assert "not checked on Windows: who owns each path" in check.detail
    assert "who may change the config file" in check.detail


def test_the_windows_fix_names_only_system_administrators_and_the_service() -> None:
    text = _acl.WindowsAcl().fix(Path("C:/ProgramData/Tillbridge"), folder=True)
    assert "/inheritance:r" in text
    assert "*S-1-5-18:(OI)(CI)F" in text  # SYSTEM
    assert "*S-1-5-32-544:(OI)(CI)F" in text  # Administrators
    assert "NT SERVICE\\TillbridgeAgent:(OI)(CI)F" in text


def test_a_path_that_cannot_be_protected_does_not_stop_the_agent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_agent_config(write_config(tmp_path))
    config.data_dir.mkdir()
    acl = fake_acl(monkeypatch)

    def refuse(path: Path, *, folder: bool) -> None:
        raise PermissionError(1, "Operation not permitted", str(path))

    monkeypatch.setattr(acl, "protect", refuse)
    protect_data(config)
    assert "doctor names the fix" in caplog.text
