"""`tillbridge-agent self-test`: proves an installation (a frozen build above all) has
what the daemon needs — every dependency importable, the time zones, a real outbox
database, the scheduler firing a job, both kinds of folder watcher taking a POS file
through the parser into the outbox, and the service host: its modules (pywin32's on
Windows) and the event loop every command runs on. Everything happens in a temporary
folder.
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import sys
import tempfile
import time
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from agent.config import AgentConfig, OutboxSettings, SourceSettings, load_agent_config
from common.settings import ConfigError

__all__ = ["Check", "run_self_test"]

DEPENDENCIES = (
    "aiomqtt",
    "paho.mqtt.client",
    "aiosqlite",
    "apscheduler.schedulers.asyncio",
    "apscheduler.triggers.cron",
    "apscheduler.triggers.interval",
    "watchdog.observers",
    "watchdog.observers.polling",
    "pydantic",
    "pydantic_settings",
    "cryptography.hazmat.primitives.ciphers.aead",
    "defusedxml.ElementTree",
    "httpx",
    "rich",
    "typer",
)

SAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/">
  <Transaction><RetailStoreID>0001</RetailStoreID><WorkstationID>1</WorkstationID>
    <SequenceNumber>1</SequenceNumber><BusinessDayDate>2024-05-01</BusinessDayDate>
    <EndDateTime>2024-05-01T10:00:00+02:00</EndDateTime><CurrencyCode>EUR</CurrencyCode>
    <RetailTransaction TransactionStatus="Totaled">
      <LineItem><SequenceNumber>1</SequenceNumber><Sale ItemType="Stock"><ItemID>1</ItemID>
        <ExtendedAmount>2.50</ExtendedAmount><Quantity>1</Quantity></Sale></LineItem>
      <LineItem><SequenceNumber>2</SequenceNumber>
        <Tender TenderType="Cash" TypeCode="Sale"><Amount>2.50</Amount></Tender></LineItem>
      <Total TotalType="TransactionGrandAmount">2.50</Total>
    </RetailTransaction></Transaction>
</POSLog>
"""


# What the Windows service host and the ACLs need (PyInstaller must bundle each).
WINDOWS_SERVICE_MODULES = (
    "servicemanager",
    "win32service",
    "win32serviceutil",
    "win32event",
    "win32api",
    "win32security",
    "ntsecuritycon",
    "win32timezone",
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


Step = Callable[[Path], Awaitable[str]]


async def _imports(_: Path) -> str:
    for name in DEPENDENCIES:
        importlib.import_module(name)
    return f"{len(DEPENDENCIES)} modules"


async def _zones(_: Path) -> str:
    for name in ("Europe/Berlin", "America/New_York", "Asia/Tokyo"):
        zoneinfo.ZoneInfo(name)
    return "IANA time zones available"


async def _parsers(_: Path) -> str:
    from agent.parsers import REGISTRY, ParseContext, compiled, parse_bytes

    names = sorted(REGISTRY)
    records = parse_bytes(SAMPLE, "poslog", context=ParseContext(file_name="selftest.xml"))
    if len(records) != 1:
        raise RuntimeError(f"the sample POSLog gave {len(records)} records, not 1")
    reader = "compiled" if compiled() else "plain Python (slower)"
    return f"{', '.join(names)}; POSLog reader {reader}"


async def _scheduler(_: Path) -> str:
    from agent.scheduler import Scheduler

    fired = asyncio.Event()

    async def job() -> None:
        fired.set()

    scheduler = Scheduler(zoneinfo.ZoneInfo("UTC"))
    scheduler.every("self-test", 0.05, job)
    scheduler.start()
    try:
        await asyncio.wait_for(fired.wait(), 10)
    finally:
        scheduler.shutdown()
    return "a job ran and the scheduler stopped"


async def _watch(folder: Path, poll: bool) -> str:
    from agent.outbox import Outbox
    from agent.sources import Watchers

    data = folder / ("data-poll" if poll else "data-native")
    pos = folder / ("pos-poll" if poll else "pos-native")
    pos.mkdir(parents=True)
    config = AgentConfig(
        store="0001",
        data_dir=data,
        status_listen="127.0.0.1:1",
        sources=[
            SourceSettings(
                name="self-test",
                path=str(pos),
                format="poslog",
                include=["**/*.xml"],
                settle_seconds=0.1,
                poll=poll,
                poll_interval=0.2,
                rescan_seconds=0.5,
            )
        ],
        outbox=OutboxSettings(min_free_disk_mb=1),
    )
    for needed in (config.data_dir, config.archive_dir, config.quarantine_dir):
        needed.mkdir(parents=True, exist_ok=True)
    outbox = await Outbox.open(config.outbox_path, config.outbox, key_file=data / "outbox.key")
    watchers = Watchers(config, outbox)
    try:
        await watchers.start()
        (pos / "sale.xml.tmp").write_bytes(SAMPLE)
        (pos / "sale.xml.tmp").rename(pos / "sale.xml")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = await outbox.stats()
            if stats.pending:
                kind = "polling" if poll else "native"
                return f"{kind} watcher took a file; the outbox holds {stats.pending} record"
            await asyncio.sleep(0.1)
        raise RuntimeError("the file was not taken within 20 seconds")
    finally:
        await watchers.stop()
        await outbox.close()


async def _native(folder: Path) -> str:
    return await _watch(folder, poll=False)


async def _polling(folder: Path) -> str:
    return await _watch(folder, poll=True)


async def _service(_: Path) -> str:
    """The service modules import, and this command runs on the loop the MQTT client needs
    (a selector loop on Windows: the proactor has no `add_reader`)."""
    importlib.import_module("agent.service")
    names = WINDOWS_SERVICE_MODULES if sys.platform == "win32" else ()
    for name in names:
        importlib.import_module(name)
    loop = asyncio.get_running_loop()
    if sys.platform == "win32" and not isinstance(loop, asyncio.SelectorEventLoop):
        raise RuntimeError(f"the event loop is {type(loop).__name__}, not a selector loop")
    try:  # the loop must watch sockets: the MQTT client cannot work without it
        reader, writer = socket.socketpair()
        try:
            loop.add_reader(reader.fileno(), lambda: None)
            loop.remove_reader(reader.fileno())
        finally:
            reader.close()
            writer.close()
    except NotImplementedError:
        raise RuntimeError(f"the event loop {type(loop).__name__} cannot watch sockets") from None
    extra = f", {len(names)} pywin32 modules" if names else ""
    return f"agent.service{extra}; event loop {type(loop).__name__}"


STEPS: list[tuple[str, Step]] = [
    ("dependencies", _imports),
    ("time zones", _zones),
    ("parsers", _parsers),
    ("scheduler", _scheduler),
    ("outbox and native watcher", _native),
    ("outbox and polling watcher", _polling),
    ("service", _service),
]


async def run_self_test(
    config_file: Path | None = None, *, steps: list[tuple[str, Step]] | None = None
) -> list[Check]:
    """Every check, in order; one failing does not stop the others."""
    checks: list[Check] = []
    if config_file is not None:
        try:
            config = load_agent_config(config_file)
            checks.append(Check("config", True, f"{config_file}: store {config.store}"))
        except ConfigError as exc:
            checks.append(Check("config", False, "; ".join(exc.problems)))
    with tempfile.TemporaryDirectory(prefix="tillbridge-self-test-") as tmp:
        for name, step in steps or STEPS:
            try:
                detail = await step(Path(tmp))
            except Exception as exc:  # noqa: BLE001 - every failure is a failed check
                checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
            else:
                checks.append(Check(name, True, detail))
    return checks
