"""Archived POS files sealed with the outbox key (`archive_encrypt`, on by default): no
card number is left readable on disk, every reader (re-read of a rebuilt outbox, `replay`,
`quarantine retry refused:…`, the quarantine copy) opens them as the POS wrote them, the
purge removes them as before, and a missing or replaced key or a damaged file is a clear
refusal naming the file and what to do, never a silent fallback."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent._seal import SealError, key_id, load_key, load_or_create_key
from agent.cli import app
from agent.config import AgentConfig, SourceSettings, load_agent_config
from agent.daemon import Agent
from agent.outbox import Outbox, list_refused
from agent.sources import (
    SourceWatcher,
    archive_days,
    clear_scratch,
    read_archived_file,
    seal_archive,
)
from agent.sources._files import archive_file
from agent.sources._sealed import CHUNK, MAGIC, SCRATCH, seal_file, sealed_key_id
from agent.support import _archive_check
from tests.agent.parsers.golden import TESTDATA, input_file
from tests.agent.sources.fakes import FakeSink, until
from tests.agent.test_daemon import offline_with_archive
from tests.agent.test_retry_refused import _as_an_older_agent_refused, _config, _ingest
from tests.support.records import wait_for

CARD_CASE = TESTDATA / "poslog_card_pan"
PAN = b"4111 1111 1111 1111"
TODAY = date(2026, 12, 5)


def _key(path: Path) -> bytes:
    return load_or_create_key(path)


def test_the_option_is_on_by_default() -> None:
    assert AgentConfig(store="0042").archive_encrypt is True


async def test_a_taken_file_is_archived_sealed_with_no_card_number_on_disk(
    tmp_path: Path,
) -> None:
    (tmp_path / "pos").mkdir()
    config = AgentConfig(
        store="0042",
        data_dir=tmp_path / "data",
        sources=[
            SourceSettings(name="pos", path=tmp_path / "pos", format="poslog", settle_seconds=0.1)
        ],
    )
    original = input_file(CARD_CASE).read_bytes()
    assert PAN in original
    sink = FakeSink()
    watcher = SourceWatcher(config.sources[0], config, sink)
    await watcher.start()
    try:
        (tmp_path / "pos" / "day.xml").write_bytes(original)
        await until(lambda: watcher.stats.ingested == 1 and watcher.stats.pending == 0)
    finally:
        await watcher.stop()
    [(_, day)] = archive_days(config.archive_dir)
    [archived] = list(day.iterdir())
    on_disk = archived.read_bytes()
    assert on_disk.startswith(MAGIC)
    for clear in (PAN, PAN.replace(b" ", b""), b"1111 1111", b"ExpirationDate", b"POSLog"):
        assert clear not in on_disk
    assert stat.S_IMODE(archived.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.outbox_key_file.stat().st_mode) == 0o600
    assert sealed_key_id(archived) == key_id(load_key(config.outbox_key_file))
    # Every reader sees the file as the POS wrote it, and its SHA-256 is the one ingested.
    assert read_archived_file(archived, config.outbox_key_file) == original
    assert sink.files[0].sha256 == hashlib.sha256(original).hexdigest()
    assert list((config.archive_dir / SCRATCH).iterdir()) == []  # no scratch file left


def test_archive_encrypt_false_keeps_the_file_plain(tmp_path: Path) -> None:
    pos = tmp_path / "pos"
    pos.mkdir()
    (pos / "day.xml").write_bytes(PAN)
    target = archive_file(pos / "day.xml", tmp_path / "archive", "2026-12-05", key=None)
    assert target.read_bytes() == PAN
    assert read_archived_file(target, tmp_path / "no-key") == PAN  # no key needed


def test_large_files_are_sealed_in_chunks_and_any_cut_or_swap_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "outbox.key"
    key = _key(key_file)
    archive = tmp_path / "archive"
    (archive / "2026-12-05").mkdir(parents=True)
    path = archive / "2026-12-05" / "big.csv"
    data = os.urandom(CHUNK) + b"x" * CHUNK + b"tail"  # three chunks, the last short
    path.write_bytes(data)
    assert seal_file(path, key, archive)
    assert not seal_file(path, key, archive)  # sealed once only
    assert read_archived_file(path, key_file) == data
    sealed = path.read_bytes()
    header = sealed.index(b"\n") + 1 + 7  # the first line and the nonce prefix
    whole = CHUNK + 16

    cut_at_a_chunk_boundary = sealed[: header + 2 * whole]
    first, second = sealed[header : header + whole], sealed[header + whole : header + 2 * whole]
    swapped = sealed[:header] + second + first + sealed[header + 2 * whole :]
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    for damaged in (cut_at_a_chunk_boundary, swapped, bytes(flipped), sealed[: header - 3]):
        path.write_bytes(damaged)
        with pytest.raises(SealError, match="cut short, damaged or altered"):
            read_archived_file(path, key_file)


def test_a_missing_or_replaced_key_is_a_clear_refusal(tmp_path: Path) -> None:
    key_file = tmp_path / "outbox.key"
    archive = tmp_path / "archive"
    (archive / "2026-12-05").mkdir(parents=True)
    path = archive / "2026-12-05" / "day.xml"
    path.write_bytes(PAN)
    seal_file(path, _key(key_file), archive)
    old_id = sealed_key_id(path)

    key_file.unlink()
    with pytest.raises(SealError) as missing:
        read_archived_file(path, key_file)
    said = str(missing.value)
    assert f"{path} is sealed with the outbox key (id {old_id})" in said
    assert f"the outbox key {key_file} is missing: restore it" in said

    new = _key(key_file)  # what a restart without the key would make
    with pytest.raises(SealError) as replaced:
        read_archived_file(path, key_file)
    assert str(replaced.value) == (
        f"{path} was sealed with another outbox key (id {old_id}) than {key_file} holds "
        f"(id {key_id(new)}): restore the key file it was sealed with"
    )


async def test_a_refused_transaction_is_retried_from_a_sealed_archive(tmp_path: Path) -> None:
    config = _config(tmp_path)
    data = input_file(TESTDATA / "poslog_multi_txn").read_bytes()
    items = _as_an_older_agent_refused(data, "poslog", "day.xml", 2)
    await _ingest(config, "day.xml", data, items)  # archives it plain, makes the key
    cfg = load_agent_config(config)
    [(_, day)] = archive_days(cfg.archive_dir)
    assert seal_archive(cfg.archive_dir, load_key(cfg.outbox_key_file)) == 1
    assert (day / "day.xml").read_bytes().startswith(MAGIC)
    (row,) = list_refused(cfg.outbox_path)

    result = CliRunner().invoke(
        app, ["quarantine", "retry", row.key, "--dry-run", "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "reads now as sale" in result.stdout
    assert "kept fragment" not in result.stdout  # read from the archived file itself

    cfg.outbox_key_file.write_bytes(os.urandom(32))  # the key replaced: no silent fallback
    refused = CliRunner().invoke(
        app, ["quarantine", "retry", row.key, "--dry-run", "--config", str(config)]
    )
    assert refused.exit_code == 1
    assert "was sealed with another outbox key" in refused.output
    assert "restore the key file it was sealed with" in refused.output


def _archive(config: AgentConfig, key: bytes, *ages: int) -> None:
    for age in ages:
        day = config.archive_dir / (TODAY - timedelta(days=age)).isoformat()
        day.mkdir(parents=True)
        for n in range(2):
            (day / f"f{n}.xml").write_bytes(PAN)
    seal_archive(config.archive_dir, key)


async def test_sealed_days_are_purged_like_plain_ones(tmp_path: Path) -> None:
    config = AgentConfig(store="0042", data_dir=tmp_path / "data")
    config.data_dir.mkdir()
    agent = Agent(config)
    agent.outbox = await Outbox.open(
        config.outbox_path, config.outbox, key_file=config.outbox_key_file
    )
    await agent.outbox.finish_reread()
    try:
        _archive(config, load_key(config.outbox_key_file), 40, 31, 5)
        assert (config.archive_dir / SCRATCH).is_dir()
        purged = await agent.purge_archive(TODAY)
    finally:
        await agent.outbox.close()
    assert [((TODAY - day).days, files) for day, files in purged] == [(40, 2), (31, 2)]
    assert [(TODAY - day).days for day, _ in archive_days(config.archive_dir)] == [5]
    assert (config.archive_dir / SCRATCH).is_dir()  # not a day: never purged, never read


async def test_the_agent_seals_what_was_archived_plain_and_clears_scratch(
    tmp_path: Path,
) -> None:
    config = AgentConfig(store="0042", data_dir=tmp_path / "data")
    day = config.archive_dir / "2026-12-01"
    day.mkdir(parents=True)
    (day / "before.xml").write_bytes(PAN)  # archived before the option, or a stop part-way
    scratch = config.archive_dir / SCRATCH
    scratch.mkdir()
    (scratch / "tmpab12.part").write_bytes(b"half a file")
    clear_scratch(config.archive_dir)
    assert list(scratch.iterdir()) == []
    agent = Agent(config)
    assert await agent.seal_archive(asyncio.Event()) == 1
    assert PAN not in (day / "before.xml").read_bytes()
    assert read_archived_file(day / "before.xml", config.outbox_key_file) == PAN
    assert await agent.seal_archive(asyncio.Event()) == 0  # sealed once only
    stopped = asyncio.Event()
    stopped.set()
    (day / "later.xml").write_bytes(PAN)
    assert await agent.seal_archive(stopped) == 0  # a stop ends the sweep between files


async def test_a_rebuild_whose_archive_does_not_open_keeps_its_mark(tmp_path: Path) -> None:
    config, archive = offline_with_archive(tmp_path, 2)
    lost = os.urandom(32)
    for path in archive.iterdir():
        seal_file(path, lost, config.archive_dir)  # sealed with a key since lost
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await wait_for(lambda: asyncio.sleep(0, agent.watchers is not None), timeout=15)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert agent.recovery_note is not None
    assert "2 do not open with the outbox key" in agent.recovery_note
    assert "restore the key they were sealed with" in agent.recovery_note
    assert agent.outbox is not None
    assert agent.outbox.reread is not None  # the re-read resumes at the next start


def test_doctor_names_sealed_files_the_key_does_not_open(tmp_path: Path) -> None:
    config = AgentConfig(store="0042", data_dir=tmp_path / "data")
    assert _archive_check(config).detail == "no archived files"
    key = _key(config.outbox_key_file)
    _archive(config, key, 3)
    check = _archive_check(config)
    assert check.ok
    assert check.detail == f"2 file(s) sealed with the outbox key (id {key_id(key)})"

    other = os.urandom(32)
    (config.archive_dir / "2026-12-04").mkdir()
    (config.archive_dir / "2026-12-04" / "x.xml").write_bytes(PAN)
    seal_file(config.archive_dir / "2026-12-04" / "x.xml", other, config.archive_dir)
    check = _archive_check(config)
    assert not check.ok
    assert f"sealed files that do not open: 1 with key id {key_id(other)}" in check.detail
    assert f"Restore the outbox key file {config.outbox_key_file}" in check.fix

    config.outbox_key_file.unlink()
    check = _archive_check(config)
    assert not check.ok
    assert f"{config.outbox_key_file} is missing" in check.detail


def test_doctor_says_what_is_kept_plain(tmp_path: Path) -> None:
    config = AgentConfig(store="0042", data_dir=tmp_path / "data", archive_encrypt=False)
    (config.archive_dir / "2026-12-05").mkdir(parents=True)
    (config.archive_dir / "2026-12-05" / "x.xml").write_bytes(PAN)
    assert _archive_check(config).detail == "1 plain file(s) (archive_encrypt = false)"
