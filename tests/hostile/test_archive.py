"""The archive of raw POS files (card numbers and names as the POS wrote them): each file
and day folder readable by the agent alone (0600 and 0700; on Windows an ACL, which a
rename does not inherit), kept `archive_days` and then purged with the purge logged, but
never a day the outbox may still have to read again; and `doctor` naming what is too
open or owned by another account."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_agent_config
from agent.daemon import Agent
from agent.outbox import Outbox
from agent.sources._files import archive_file
from agent.sources._quarantine import quarantine_file
from agent.support import _permissions_check
from tests.agent.windows import fake_acl

TODAY = date(2026, 12, 5)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_archived_file_and_its_day_are_readable_by_the_agent_alone(tmp_path: Path) -> None:
    pos = tmp_path / "pos"
    pos.mkdir()
    (pos / "day.xml").write_text("<POSLog/>")
    os.chmod(pos / "day.xml", 0o644)
    target = archive_file(pos / "day.xml", tmp_path / "archive", "2026-12-05")
    assert mode(target) == 0o600
    assert mode(target.parent) == 0o700


def test_on_windows_the_archived_file_gets_the_agents_acl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acl = fake_acl(monkeypatch)
    pos = tmp_path / "pos"
    pos.mkdir()
    (pos / "day.xml").write_text("<POSLog/>")
    target = archive_file(pos / "day.xml", tmp_path / "archive", "2026-12-05")
    assert acl.protected == {target.parent: True, target: False}


def _config(tmp_path: Path, days: int = 30) -> AgentConfig:
    return AgentConfig(store="0042", data_dir=tmp_path / "data", archive_days=days)


def _archive(config: AgentConfig, *ages: int) -> None:
    for age in ages:
        day = config.archive_dir / (TODAY - timedelta(days=age)).isoformat()
        day.mkdir(parents=True)
        for n in range(2):
            (day / f"f{n}.xml").write_text("<POSLog/>")


def _days(config: AgentConfig) -> list[int]:
    return sorted((TODAY - date.fromisoformat(p.name)).days for p in config.archive_dir.iterdir())


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    config = _config(tmp_path)
    config.data_dir.mkdir()
    agent = Agent(config)
    agent.outbox = await Outbox.open(
        config.outbox_path, config.outbox, key_file=config.data_dir / "k"
    )
    await agent.outbox.finish_reread()  # a new outbox starts with a re-read mark
    try:
        yield agent
    finally:
        await agent.outbox.close()


async def test_days_past_archive_days_are_purged_and_logged(
    agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    _archive(agent.config, 40, 31, 30, 5)
    caplog.set_level(logging.INFO, logger="tillbridge.agent")
    purged = await agent.purge_archive(TODAY)
    assert [(TODAY - day).days for day, _ in purged] == [40, 31]
    assert [files for _, files in purged] == [2, 2]
    assert _days(agent.config) == [5, 30]
    said = [r for r in caplog.records if r.getMessage() == "Archive day purged."]
    assert [r.day for r in said] == [
        (TODAY - timedelta(days=40)).isoformat(),
        (TODAY - timedelta(days=31)).isoformat(),
    ]  # type: ignore[attr-defined]


async def test_a_pending_reread_keeps_every_day_it_reads(agent: Agent) -> None:
    assert agent.outbox is not None
    _archive(agent.config, 50, 45, 40, 31)
    agent.outbox.reread = {"since": (TODAY - timedelta(days=45)).isoformat(), "reason": "test"}
    await agent.purge_archive(TODAY)
    assert _days(agent.config) == [31, 40, 45]  # 50 was before the re-read's first day
    agent.outbox.reread = {"since": None, "reason": "rebuilt with an empty archive"}
    await agent.purge_archive(TODAY)
    assert _days(agent.config) == [31, 40, 45]


async def test_days_that_hold_unacknowledged_records_are_kept(agent: Agent) -> None:
    assert agent.outbox is not None
    _archive(agent.config, 50, 40, 36, 35, 31)
    created = datetime(2026, 12, 5, 12, tzinfo=agent.config.zone) - timedelta(days=35)
    db = agent.outbox._db
    await db.execute(
        "INSERT INTO records (seq, key, kind, business_date, correlation_id, size, created_at)"
        " VALUES (1, 'k', 'sale', '2026-10-31', 'c', 1, ?)",
        (created.timestamp(),),
    )
    await agent.purge_archive(TODAY)
    assert _days(agent.config) == [31, 35, 36]  # from the day before the oldest unacked


async def test_archive_days_zero_keeps_everything(tmp_path: Path) -> None:
    config = _config(tmp_path, days=0)
    _archive(config, 400)
    agent = Agent(config)
    assert await agent.purge_archive(TODAY) == []
    assert _days(config) == [400]


def _agent_config(tmp_path: Path) -> tuple[AgentConfig, Path]:
    file = tmp_path / "agent.toml"
    file.write_text(f'[agent]\nstore = "0042"\ndata_dir = "{tmp_path / "data"}"\n')
    os.chmod(file, 0o644)
    config = load_agent_config(file)
    config.data_dir.mkdir(mode=0o700)
    return config, file


def test_doctor_names_an_archived_file_others_could_read(tmp_path: Path) -> None:
    config, file = _agent_config(tmp_path)
    config.archive_dir.mkdir(mode=0o700)
    day = config.archive_dir / "2026-12-05"
    day.mkdir(mode=0o700)
    (day / "day.xml").write_text("<POSLog/>")
    os.chmod(day / "day.xml", 0o644)
    check = _permissions_check(config, file)
    assert not check.ok
    assert f"archived file {day / 'day.xml'}: open to its group and other users (mode 0644)" in (
        check.detail
    )
    assert f"chmod 600 {day / 'day.xml'}" in check.fix
    os.chmod(day / "day.xml", 0o600)
    assert _permissions_check(config, file).ok


def test_doctor_names_a_config_others_could_change(tmp_path: Path) -> None:
    config, file = _agent_config(tmp_path)
    os.chmod(file, 0o666)  # noqa: S103 - the too-open config doctor must name
    check = _permissions_check(config, file)
    assert not check.ok
    assert f"config file {file}: writable by other users (mode 0666)" in check.detail
    os.chmod(file, 0o644)
    assert _permissions_check(config, file).ok


def test_doctor_names_a_file_owned_by_another_account(tmp_path: Path) -> None:
    config, file = _agent_config(tmp_path)
    config.archive_dir.mkdir(mode=0o700)
    day = config.archive_dir / "2026-12-05"
    day.mkdir(mode=0o700)
    foreign = day / "day.xml"
    if os.geteuid() == 0:
        foreign.write_text("<POSLog/>")
        os.chmod(foreign, 0o600)
        os.chown(foreign, 12345, 12345)
    else:  # not root: a file of root's, reached through a link in the archive
        foreign.symlink_to("/etc/hostname" if Path("/etc/hostname").exists() else "/etc/passwd")
    check = _permissions_check(config, file)
    assert not check.ok
    assert f"archived file {foreign}: owned by uid" in check.detail
    assert f"not the data folder's owner {config.data_dir.stat().st_uid}" in check.detail


def test_doctor_names_a_config_holding_the_password_others_could_read(tmp_path: Path) -> None:
    config, file = _agent_config(tmp_path)
    file.write_text(file.read_text() + '[agent.broker]\npassword = "s3cret"\n')
    check = _permissions_check(config, file)
    assert not check.ok
    assert f"config file {file}: holds the MQTT password, open to others (mode 0644)" in (
        check.detail
    )
    assert "s3cret" not in check.detail + check.fix
    os.chmod(file, 0o600)
    assert _permissions_check(config, file).ok


def _quarantine(pos: Path, quarantine: Path) -> Path:
    (pos / "bad.xml").write_text("<POSLog>4111 1111 1111 1111")
    os.chmod(pos / "bad.xml", 0o644)
    return quarantine_file(
        pos / "bad.xml",
        quarantine,
        source="pos",
        folder=pos,
        sha256="",
        reason="broken",
        place="",
        when=datetime(2026, 12, 5, tzinfo=UTC),
    )


def test_a_quarantined_file_is_readable_by_the_agent_alone(tmp_path: Path) -> None:
    pos = tmp_path / "pos"
    pos.mkdir()
    target = _quarantine(pos, tmp_path / "quarantine")
    assert mode(target) == 0o600  # like an archived file: it holds what the POS wrote


def test_on_windows_a_quarantined_file_gets_the_agents_acl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acl = fake_acl(monkeypatch)
    pos = tmp_path / "pos"
    pos.mkdir()
    target = _quarantine(pos, tmp_path / "quarantine")
    assert acl.protected == {target: False}


def test_doctor_names_a_quarantined_file_others_could_read(tmp_path: Path) -> None:
    config, file = _agent_config(tmp_path)
    config.quarantine_dir.mkdir(mode=0o700)
    bad = config.quarantine_dir / "bad.xml"
    bad.write_text("<POSLog>")
    os.chmod(bad, 0o644)
    (config.quarantine_dir / "bad.xml.error.txt").write_text("Reason: broken")
    os.chmod(config.quarantine_dir / "bad.xml.error.txt", 0o644)  # the note: no POS data
    check = _permissions_check(config, file)
    assert not check.ok
    assert f"quarantined file {bad}: open to its group and other users (mode 0644)" in check.detail
    assert "error.txt" not in check.detail
    os.chmod(bad, 0o600)
    assert _permissions_check(config, file).ok
