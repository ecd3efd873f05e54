"""The store daemon: folders → parsers → outbox → uplink, with the scheduled work around
them (heartbeat, budget, purge, end of day) and a status file field support can read.

Each part runs on its own: a broker that is away never stops files being taken, and
a full outbox never stops records being sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import _acl
from agent import _failpoints as failpoints
from agent._seal import SealError, key_id, load_key, load_or_create_key
from agent._version import __version__
from agent.config import AgentConfig
from agent.eod import DayCounts, summarise_day
from agent.lock import data_dir_lock
from agent.outbox import Outbox
from agent.parsers import MASKED, ParseContext, Parsed, ParseError, parse_stream
from agent.scheduler import Scheduler
from agent.sources import (
    IngestFile,
    Watchers,
    archive_days,
    clear_scratch,
    list_quarantined,
    purge_archive,
    quarantine_copy,
    read_archived_file,
    seal_archive,
    sealed_key_ids,
)
from agent.uplink import Uplink
from common.logs import bind, new_correlation_id
from common.notify import Notifier
from contract import AgentInfo, Heartbeat

if TYPE_CHECKING:  # loaded when [agent.downlink] is on: an agent without it stays lean
    from agent.downlink import Downlink
    from agent.reference import Reference

__all__ = ["Agent", "closed_before", "protect_data", "read_status", "read_status_address"]

log = logging.getLogger("tillbridge.agent")

STATUS_FILE = "status.json"
STATUS_ADDRESS_FILE = "status.address"
"""Where the running daemon answers `GET /status`, written at start to its data folder:
the `status` command reads the address there, never the port in a config that may have
changed since the daemon started (and `status_listen` may be port 0: any free port)."""


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


def _from_loopback(writer: asyncio.StreamWriter) -> bool:
    """Whether the peer is on this machine (127.0.0.0/8, ::1, v4-mapped loopback)."""
    import ipaddress

    peer = writer.get_extra_info("peername")
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def closed_before(now: datetime, close: str) -> date:
    """Business days before this date are closed: day D closes at `close` on D + 1."""
    hour, minute = (int(p) for p in close.split(":"))
    today = now.date()
    return today if (now.hour, now.minute) >= (hour, minute) else today - timedelta(days=1)


def read_status(data_dir: Path) -> dict[str, Any] | None:
    """The status the daemon last wrote, or None when it has never run here."""
    try:
        data: dict[str, Any] = json.loads((data_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def read_status_address(data_dir: Path) -> dict[str, Any] | None:
    """`{"listen": "127.0.0.1:PORT", "pid": N}` of the running daemon, or None when no
    daemon has said where it answers (not running, or its endpoint could not bind)."""
    try:
        data = json.loads((data_dir / STATUS_ADDRESS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("listen"), str):
        return None
    return data


def archived_files(archive_dir: Path, since: date | None = None) -> list[Path]:
    """Archived files, oldest day first; only days from `since` on when given."""
    found: list[Path] = []
    for when, day in archive_days(archive_dir):
        if since is None or when >= since:
            found.extend(sorted(p for p in day.rglob("*") if p.is_file()))
    return found


def protect_data(config: AgentConfig) -> None:
    """Only the agent's account (and SYSTEM and Administrators on Windows) may read the
    data folder, which holds the outbox, the archive of raw POS files and the quarantine,
    and the logs, and the MQTT password file. A log file outside the data folder is
    protected on its own: its folder may be shared with other programs."""
    paths = [(folder, True) for folder in (config.data_dir, config.archive_dir)]
    paths.append((config.quarantine_dir, True))
    logs = config.log_file
    if logs.parent.is_dir() and logs.parent.is_relative_to(config.data_dir):
        paths.append((logs.parent, True))
    elif logs.exists():
        paths.append((logs, False))
    secret = config.broker.password_file
    if secret is not None and secret.is_file():
        paths.append((secret, False))  # the MQTT password: the agent's account alone reads it
    for path, folder in paths:
        problem = _acl.try_protect(path, folder=folder)
        if problem is not None:
            log.warning(
                "Could not make a path readable by the agent alone; doctor names the fix.",
                extra={"path": str(path), "error": problem},
            )


async def read_archived(config: AgentConfig, path: Path) -> tuple[IngestFile, Iterator[Parsed]]:
    """An archived file as the watcher would have read it (a sealed one opened with the
    outbox key: SealError when it does not open). The archive does not say which source a
    file came from: with one source its settings apply, otherwise detection."""
    source = config.sources[0] if len(config.sources) == 1 else None
    data = await asyncio.to_thread(read_archived_file, path, config.outbox_key_file)
    sha = hashlib.sha256(data).hexdigest()
    context = ParseContext(
        file_name=path.name,
        sha256=sha,
        store=config.store,
        timezone=config.zone,
        currency=config.currency,
        encoding=source.encoding if source else None,
        delimiter=source.delimiter if source else None,
        columns=dict(source.columns) if source else {},
        limits=config.limits,
        transactions_per_file=config.limits.transactions_per_file,
        thousands=source.thousands if source else "",
    )
    fmt = source.format if source else "auto"
    item = IngestFile("archive", str(path), path.name, sha, len(data))
    return item, parse_stream(io.BytesIO(data), fmt, context=context)


class Agent:
    """One store's daemon. `run(stop)` returns once `stop` is set and the parts have stopped."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        notifier: Notifier | None = None,
        config_file: Path | None = None,
    ) -> None:
        self.config = config
        self.config_file = config_file
        self.notifier = notifier or Notifier()
        self.outbox: Outbox | None = None
        self.uplink: Uplink | None = None
        self.downlink: Downlink | None = None
        self.reference: Reference | None = None
        self.watchers: Watchers | None = None
        self.scheduler = Scheduler(config.zone)
        self.started_at = datetime.now(UTC)
        self.recovery_note: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        config = self.config
        for folder in (config.data_dir, config.archive_dir, config.quarantine_dir):
            folder.mkdir(parents=True, exist_ok=True)
        protect_data(config)
        with data_dir_lock(config.data_dir):
            await self._run_locked(stop)

    async def _run_locked(self, stop: asyncio.Event) -> None:
        config = self.config
        key_file = config.outbox_key_file
        key_was_there = await asyncio.to_thread(key_file.exists)
        outbox = await Outbox.open(
            config.outbox_path,
            config.outbox,
            key_file=key_file,
            archive_dir=config.archive_dir,
            limits=config.limits,
        )
        self.outbox = outbox
        downlink_task: asyncio.Task[None] | None = None
        sealing: asyncio.Task[int] | None = None
        try:
            if not key_was_there:
                await self._key_made_anew()
            if config.downlink.enabled:
                from agent.downlink import Downlink, DownlinkStore
                from agent.reference import open_reference
                from agent.writers import make_writer

                if config.reference.enabled:
                    key = await asyncio.to_thread(load_key, key_file)
                    self.reference = await open_reference(config, key)
                store = await DownlinkStore.open(config.downlink_path)
                self.downlink = Downlink(
                    config, store, make_writer(config.downlink), reference=self.reference
                )
                downlink_task = asyncio.create_task(self.downlink.run(stop), name="downlink")
            uplink = Uplink(config, outbox, self.heartbeat, downlink=self.downlink)
            self.uplink = uplink
            outbox.on_new_records = uplink.notify
            uplink_task = asyncio.create_task(uplink.run(stop), name="uplink")
            server = await self._status_server()
            self._schedule()
            self.scheduler.start()
            if outbox.floor_pending:  # a rebuilt outbox without a last seq: ask central
                await self._await_floor(stop)
            if outbox.reread is not None and not stop.is_set():
                await self.reread_archive()  # a new or rebuilt outbox: before new files
            # What a stop part-way through sealing left, before anything seals again.
            await asyncio.to_thread(clear_scratch, config.archive_dir)
            if config.archive_encrypt:  # files archived plain before, or by a stop part-way
                sealing = asyncio.create_task(self.seal_archive(stop), name="seal-archive")
            watchers = Watchers(
                config, outbox, config_file=str(self.config_file) if self.config_file else ""
            )
            self.watchers = watchers
            await watchers.start()
            await self.end_of_day()  # catch up on days that closed while the agent was off
            self.notifier.ready(f"store {config.store}: taking files")
            log.info(
                "Agent started.",
                extra={
                    "store": config.store,
                    "version": __version__,
                    "sources": [s.name for s in config.sources],
                },
            )
            await self.write_status()
            await stop.wait()
            log.info("Agent stopping.")
            self.notifier.stopping()
            await self.scheduler.stop()
            if server is not None:
                server.close()
                self._forget_status_address()
            await watchers.stop()
            await asyncio.wait_for(uplink_task, 30)
            if downlink_task is not None:
                await asyncio.wait_for(downlink_task, 30)
            await self.write_status()
        finally:
            self.scheduler.shutdown()
            if sealing is not None:  # it stops between two files once `stop` is set
                with contextlib.suppress(Exception):
                    await sealing
            if self.downlink is not None:
                await self.downlink.store.close()
            if self.reference is not None:
                await self.reference.store.close()
            await outbox.close()
        log.info("Agent stopped.", extra={"store": config.store})

    async def _await_floor(self, stop: asyncio.Event) -> None:
        """Number nothing until central said its highest seq of this store (each heartbeat
        asks again); files wait in the POS folder meanwhile, the archive stays as it is."""
        outbox = self.outbox
        assert outbox is not None
        self.recovery_note = (
            "waiting for central's highest seq of this store before numbering records "
            "(the damaged outbox gave none); files wait in the POS folder"
        )
        log.warning("Outbox rebuilt without a last seq; waiting for central's highest seq.")
        await self.write_status()
        while outbox.floor_pending and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        self.recovery_note = None

    def _schedule(self) -> None:
        config = self.config
        s = self.scheduler
        s.every("heartbeat", config.uplink.heartbeat_seconds, self.tick)
        s.every("budget", 5, self._refresh_budget)
        s.every("purge", 3600, self._purge)
        # Folder rescans are the watcher's own, each source on its own rescan_seconds.
        s.daily("end_of_day", config.end_of_day_close, self._end_of_day)

    # -- scheduled work -------------------------------------------------------------------

    async def tick(self) -> None:
        """Heartbeat to central, status file for field support, watchdog for systemd."""
        if self.uplink is not None:
            with contextlib.suppress(Exception):
                await self.uplink.publish_status()
        await self.write_status()
        self.notifier.watchdog()

    async def _refresh_budget(self) -> None:
        if self.outbox is not None:
            await self.outbox.refresh_budget()

    async def _purge(self) -> None:
        if self.outbox is not None:
            await self.outbox.purge()
            await self.purge_archive()
        if self.downlink is not None:
            await self.downlink.purge()

    async def purge_archive(self, today: date | None = None) -> list[tuple[date, int]]:
        """Remove archive days older than `archive_days`, but never one the outbox still
        needs (a pending re-read, or records central has not acknowledged); each purged
        day is logged with its file count."""
        config, outbox = self.config, self.outbox
        if outbox is None or not config.archive_days:
            return []
        today = today or datetime.now(config.zone).date()
        before = today - timedelta(days=config.archive_days)
        await outbox.refresh_budget()  # the oldest unacknowledged record, read now
        needed = outbox.archive_needed_from(config.zone)
        if needed is not None and needed < before:
            before = needed
        purged = await asyncio.to_thread(purge_archive, config.archive_dir, before)
        for day, files in purged:
            log.info(
                "Archive day purged.",
                extra={"day": day.isoformat(), "files": files, "archive_days": config.archive_days},
            )
        return purged

    async def seal_archive(self, stop: asyncio.Event) -> int:
        """Seal every plain archived file with the outbox key (`archive_encrypt` set on an
        archive kept plain until now, or a file a stop left plain); returns how many."""
        config = self.config
        try:
            key = await asyncio.to_thread(load_or_create_key, config.outbox_key_file)
        except (OSError, SealError) as exc:
            log.error(
                "Archive cannot be sealed: the outbox key is unusable.", extra={"error": str(exc)}
            )
            return 0
        sealed = await asyncio.to_thread(
            seal_archive, config.archive_dir, key, stopping=stop.is_set
        )
        if sealed:
            log.info(
                "Archived files sealed with the outbox key.",
                extra={"files": sealed, "key_id": key_id(key)},
            )
        return sealed

    async def _key_made_anew(self) -> None:
        """The outbox key was missing at start and a new one was made: archived files
        sealed with the old one no longer open with it. Say so once, loudly."""
        config = self.config
        ids = await asyncio.to_thread(sealed_key_ids, config.archive_dir)
        sealed = sum(n for said, n in ids.items() if said is not None)
        if sealed:
            log.error(
                "The outbox key was missing and a new one was made; archived files sealed "
                "with the old key do not open until it is restored.",
                extra={"key_file": str(config.outbox_key_file), "files": sealed},
            )

    async def _end_of_day(self) -> None:
        await self.end_of_day()

    async def end_of_day(self, now: datetime | None = None) -> int:
        """Queue an end_of_day record for every closed business day not yet summarised (or
        changed since); returns how many were queued."""
        outbox = self.outbox
        if outbox is None:
            return 0
        config = self.config
        now = now or datetime.now(config.zone)
        cutoff = closed_before(now.astimezone(config.zone), config.end_of_day_close)
        queued = 0
        for day, revision in await outbox.days_to_summarise(cutoff.isoformat()):
            with bind(business_date=day, correlation_id=new_correlation_id()):
                queued += await self._summarise_day(day, revision, now)
        return queued

    async def _summarise_day(self, day: str, revision: int, now: datetime) -> int:
        """One closed day's end-of-day records, under the correlation id bound for it."""
        outbox = self.outbox
        assert outbox is not None
        config = self.config
        skipped = await outbox.day_skipped(day)
        transactions, covered = await outbox.day_transactions(day)
        records = summarise_day(
            store=config.store,
            business_date=date.fromisoformat(day),
            transactions=transactions,
            counts=DayCounts(
                training=skipped.get("training", 0),
                control=skipped.get("control", 0),
                suspended=skipped.get("suspended", 0),
                refused=await outbox.day_refused(day),
            ),
            default_currency=config.currency,
            closed_at=now,
            revision=revision,
            covered=covered,
        )
        await outbox.add_day_summary(day, revision, list(records), covered)
        log.info("End of day queued.", extra={"revision": revision})
        return len(records)

    # -- recovery -------------------------------------------------------------------------

    async def reread_archive(self) -> tuple[int, int]:
        """Take every archived file the outbox does not hold into it again; central drops
        what it already has. The outbox's re-read mark is cleared only once every file has
        been taken, so a stop part-way resumes at the next start. Returns (files re-read,
        files that could not be)."""
        outbox = self.outbox
        assert outbox is not None
        mark = outbox.reread or {}
        since = mark.get("since")
        files = archived_files(
            self.config.archive_dir, date.fromisoformat(since) if since else None
        )
        self.recovery_note = f"re-reading {len(files)} archived file(s) into the outbox"
        if files:
            log.warning(
                "Re-reading the archive into the outbox.",
                extra={
                    "files": len(files),
                    "reason": mark.get("reason"),
                    "marked_at": mark.get("at"),
                },
            )
        done = failed = sealed = 0
        for path in files:
            with bind(file=path.name, correlation_id=new_correlation_id()):
                try:
                    item, items = await read_archived(self.config, path)
                except SealError as exc:  # the key it was sealed with is needed: wait for it
                    sealed += 1
                    log.error(
                        "Archived file does not open; the re-read resumes at the next start.",
                        extra={"file": str(path), "error": str(exc)},
                    )
                    continue
                try:
                    outcome = await outbox.ingest(item, items, budget=False)
                except ParseError as exc:
                    failed += 1
                    await self._quarantine_archived(path, item.sha256, exc)
                    continue
            if not outcome.already_ingested:
                done += 1
            failpoints.hit("reread.file_done")
        failpoints.hit("reread.all_done")
        if sealed:  # the mark stays, and with it every archive day it reads (never purged)
            self.recovery_note = (
                f"re-read {done} archived file(s); {sealed} do not open with the outbox key "
                f"{self.config.outbox_key_file} (see the log): restore the key they were "
                "sealed with and start the agent again"
            )
            log.error("Archive re-read unfinished.", extra={"files": done, "sealed": sealed})
            return done, failed + sealed
        await outbox.finish_reread()
        if outbox.recovery is None and not done and not failed:
            self.recovery_note = None  # a new outbox with nothing behind it: nothing to say
            return done, failed
        self.recovery_note = f"re-read {done} archived file(s) after the outbox was rebuilt" + (
            f"; {failed} could not be read (see the log)" if failed else ""
        )
        log.warning("Outbox rebuilt from the archive.", extra={"files": done, "failed": failed})
        return done, failed

    async def _quarantine_archived(self, path: Path, sha256: str, error: ParseError) -> None:
        """An archived file this agent can no longer read (a stricter parser since): its
        records may exist nowhere else now, so it must be seen. A copy goes to quarantine,
        where `quarantine list` shows it and `quarantine retry` takes it again after a fix."""
        config = self.config
        source = config.sources[0] if config.sources else None
        try:
            target = await asyncio.to_thread(
                quarantine_copy,
                path,
                config.quarantine_dir,
                key_file=config.outbox_key_file,
                source=source.name if source else "archive",
                folder=source.path if source else path.parent,
                sha256=sha256,
                reason=f"could not be re-read from the archive: {error.reason}",
                place=error.place,
                when=datetime.now(config.zone),
                config_file=str(self.config_file or "<config file>"),
            )
        except (OSError, SealError) as exc:
            target = None
            log.error(
                "Archived file could not be copied to quarantine.",
                extra={"file": str(path), "error": str(exc)},
            )
        log.error(
            "Archived file could not be re-read after the outbox was rebuilt.",
            extra={
                "file": str(path),
                "reason": error.reason,
                "place": error.place,
                "quarantined_as": target.name if target else None,
            },
        )

    # -- status ---------------------------------------------------------------------------

    async def _status_server(self) -> asyncio.Server | None:
        """`GET /status` on the loopback address (config: status_listen) for field support."""
        host, _, port = self.config.status_listen.rpartition(":")
        try:
            server = await asyncio.start_server(self._answer, host.strip("[]"), int(port))
        except OSError as exc:
            log.warning(
                "Status endpoint unavailable; status is still written to status.json.",
                extra={"listen": self.config.status_listen, "error": str(exc)},
            )
            self._forget_status_address()  # a stale address would lead to another program
            return None
        bound = server.sockets[0].getsockname()
        listen = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
        target = self.config.data_dir / STATUS_ADDRESS_FILE
        tmp = target.with_suffix(".tmp-address")
        try:
            tmp.write_text(json.dumps({"listen": listen, "pid": os.getpid()}), encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            log.warning(
                "Status address could not be written; `status` reads status.json instead.",
                extra={"path": str(target), "error": str(exc)},
            )
        log.debug("Status endpoint listening.", extra={"listen": listen})
        return server

    def _forget_status_address(self) -> None:
        with contextlib.suppress(OSError):
            (self.config.data_dir / STATUS_ADDRESS_FILE).unlink(missing_ok=True)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            first = request.split(b"\r\n", 1)[0].split()
            target = first[1].decode("ascii", "replace") if len(first) >= 2 else ""
            if not _from_loopback(writer):
                # No credentials here: the loopback address is the only way in.
                body, head = b'{"error": "loopback only"}', "HTTP/1.1 403 Forbidden\r\n"
            elif len(first) >= 2 and first[0] == b"GET" and first[1] in (b"/status", b"/"):
                body = json.dumps(await self.status(), default=str).encode()
                head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            elif first[:1] == [b"GET"] and _lookup_path(target):
                from agent.reference import answer_lookup

                code, data = await answer_lookup(
                    self.reference.store if self.reference else None, target
                )
                body = json.dumps(data, default=str).encode()
                head = f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: application/json\r\n"
            else:
                body, head = b'{"error": "not found"}', "HTTP/1.1 404 Not Found\r\n"
            writer.write(
                f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()

    async def heartbeat(self, connected: bool) -> Heartbeat:
        outbox = self.outbox
        assert outbox is not None
        stats = await outbox.stats()
        sources = self.watchers.stats() if self.watchers is not None else {}
        orders = await self.downlink.summary() if self.downlink is not None else None
        return Heartbeat(
            store=self.config.store,
            state="online",
            agent=AgentInfo(id=self.config.agent_id, version=__version__),
            at=datetime.now(UTC),
            connected=connected,
            backlog_rows=outbox.unacked_rows,
            backlog_bytes=outbox.unacked_bytes,
            oldest_unacked_seconds=stats.oldest_unacked_seconds,
            last_ack_at=stats.last_ack_at,
            files_pending=sum(s.pending for s in sources.values()),
            files_quarantined=await self._quarantined_now(),
            budget=stats.budget,
            free_disk_bytes=stats.free_disk_bytes,
            seq_floor_wanted=outbox.floor_pending,
            orders_waiting=orders.waiting if orders else 0,
            orders_alert=orders.alert_count if orders else 0,
            **(await _resync_of(self.reference)),
        )

    async def _quarantined_now(self) -> int:
        """Files in quarantine now (what `quarantine list` lists), not refusals counted
        since start: a file retried and taken leaves the count."""
        try:
            return len(await asyncio.to_thread(list_quarantined, self.config.quarantine_dir))
        except OSError:
            return 0

    async def status(self) -> dict[str, Any]:
        """Everything field support needs at a glance, as JSON-ready data."""
        outbox = self.outbox
        uplink = self.uplink
        stats = await outbox.stats() if outbox is not None else None
        sources = self.watchers.stats() if self.watchers is not None else {}
        return {
            "store": self.config.store,
            "agent_id": self.config.agent_id,
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self.started_at.isoformat(),
            "written_at": datetime.now(UTC).isoformat(),
            "connected": bool(uplink and uplink.connected.is_set()),
            "broker": self.config.broker.host,
            "last_error": uplink.last_error if uplink else None,
            "last_error_at": (
                uplink.last_error_at.isoformat()
                if uplink and uplink.last_error_at is not None
                else None
            ),
            "outbox": dataclasses.asdict(stats) if stats is not None else None,
            "recovery": self.recovery_note,
            "masked": dict(MASKED),
            "quarantined_files": await self._quarantined_now(),
            "sources": {name: dataclasses.asdict(s) for name, s in sources.items()},
            "sent": {
                "batches": uplink.batches_sent if uplink else 0,
                "records": uplink.records_sent if uplink else 0,
                "resent": uplink.resent if uplink else 0,
                "in_flight": uplink.in_flight if uplink else 0,
            },
            "next_end_of_day": self.scheduler.next_run("end_of_day"),
            "downlink": await self._downlink_status(),
            "reference": await _reference_status(self.reference),
        }

    async def _downlink_status(self) -> dict[str, Any] | None:
        """Orders from central: received, written to the POS, waiting, and alerts."""
        downlink = self.downlink
        if downlink is None:
            return None
        summary = await downlink.summary()
        settings = self.config.downlink
        return {
            **dataclasses.asdict(summary),
            "writer": settings.writer,
            "target": (
                str(settings.folder) if settings.writer == "file" else settings.micros_sts.url
            ),
            "alert_after_seconds": settings.alert_after_seconds,
            "refused_batches": downlink.refused_batches,
            "seq_clashes": downlink.clashes,
        }

    async def write_status(self) -> None:
        """Write status.json atomically (the `status` command and support bundles read it)."""
        data = await self.status()
        target = self.config.data_dir / STATUS_FILE
        tmp = target.with_suffix(".tmp")
        text = json.dumps(data, indent=2, default=str)

        def write() -> None:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)

        try:
            await asyncio.to_thread(write)
        except OSError as exc:
            log.warning("Status file could not be written.", extra={"error": str(exc)})


async def _resync_of(reference: Reference | None) -> dict[str, Any]:
    if reference is None:
        return {}
    from agent.reference import heartbeat_resync

    return await heartbeat_resync(reference)


async def _reference_status(reference: Reference | None) -> dict[str, Any] | None:
    if reference is None:
        return None
    from agent.reference import reference_status

    return await reference_status(reference)


def _lookup_path(target: str) -> bool:
    """The till's lookup paths (`agent.reference.is_lookup`), told apart without loading
    the reference modules an agent without reference data never needs."""
    path = target.partition("?")[0]
    return path == "/customers" or path.startswith("/items/")
