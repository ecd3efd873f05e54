"""Watching the POS export folders: take each complete file, parse it into the sink, then
archive it; refuse a bad one into quarantine with a note.

Files are found by watchdog events (native on local disks, polling on network shares)
and by a full rescan every `rescan_seconds`, which also finds the files present at
start. A file is complete as `complete_when` says: by default at once when it arrived by
rename (`.tmp` → final name) or has its `.ready` marker, otherwise once its size and mtime
held for `settle_seconds`, and on Windows only once no other process holds it open.
Each source takes its files one at a time, oldest first; sources run side by side.
Paths are taken by their long names (never 8.3 short ones); a mapped network drive is
polled, and one a service cannot see is named as such.

What goes wrong with one file never stops the watcher:

    ParseError (or any failure inside the parser)   the file's fault: quarantined
    a name with a control character                  quarantined unread, under a safe name
    a FIFO, device, socket, a link that loops or
      leads outside                                  skipped unopened, logged once
    a locked or unreadable file, a failing sink      passing: the file stays, tried again

What goes wrong with a folder never stops the other sources: a watched folder (or a folder
below it) that is missing, loops or may not be listed is counted, logged once per change
and shown in `status` with its path and reason until it reads again; the files beside it
flow, and it is looked at again at every rescan.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any

from watchdog.observers.api import BaseObserver

from agent._seal import SealError, load_or_create_key
from agent.config import AgentConfig, SourceSettings
from agent.parsers import ParseContext, ParseError, parse_stream
from common.logs import bind, new_correlation_id

from ._events import alive, start_observer, stop_observer
from ._files import (
    READY_SUFFIX,
    ChangedError,
    Unfit,
    archive_file,
    folder_problem,
    hash_file,
    look_all,
    path_problem,
    restore_staged,
    safe_name,
    unfit,
    unsafe_name,
)
from ._glob import matches, relative_parts
from ._intake import Records, ingest, open_unchanged
from ._pending import Candidate, Pending
from ._quarantine import quarantine_file
from ._share import is_sharing_violation, long_name, mapped_drive, missing_drive_hint, released
from ._sink import BudgetReached, FileSink, IngestFile

__all__ = ["SourceStats", "SourceWatcher", "Watchers"]

log = logging.getLogger("tillbridge.agent.sources")

RETRY_SECONDS = 5.0  # first wait after a passing failure; doubles up to RETRY_MAX_SECONDS
RETRY_MAX_SECONDS = 60.0
IDLE_SECONDS = 1.0  # longest wait while paused by the sink (its budget has no event)
MARKER_SECONDS = 5.0  # safety look for `.ready` markers whose event was missed
HELD_SECONDS = 1.0  # least wait before looking again at a file the POS holds open


@dataclasses.dataclass(slots=True)
class SourceStats:
    """What one source has done, for status and heartbeats."""

    pending: int = 0  # seen, not yet taken (settling, waiting for a marker, held back)
    ingested: int = 0
    duplicates: int = 0  # files whose content was ingested before: archived, not sent
    quarantined: int = 0
    records: int = 0  # records newly committed from this source's files
    retrying: int = 0  # files left in place after a passing failure, to be tried again
    unfit: int = 0  # FIFOs, devices, sockets, links that loop or lead outside: skipped
    unreadable: int = 0  # times a watched folder became unreadable (missing, loop, denied)
    unreadable_now: dict[str, str] = dataclasses.field(default_factory=dict)  # path → why
    paused: bool = False  # the sink's budget holds new files back
    watching: bool = False  # folder events arrive (else only the rescan finds files)
    mode: str = ""  # "events" or "polling" while watching
    last_file: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class SourceWatcher:
    """One configured folder: complete files are taken one at a time, oldest first."""

    def __init__(
        self,
        source: SourceSettings,
        config: AgentConfig,
        sink: FileSink,
        *,
        config_file: str = "",
    ) -> None:
        self.source = source
        self.config = config
        self.sink = sink
        self.folder = long_name(Path(os.path.abspath(source.path)))
        self.stats = SourceStats()
        self.config_file = config_file or "<config file>"  # named in quarantine notes
        self._pending = Pending(
            settle_seconds=source.settle_seconds,
            require_marker=source.require_ready_marker or source.complete_when == "ready",
            trust_name=source.complete_when == "renamed",
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self._observer: BaseObserver | None = None
        self._task: asyncio.Task[None] | None = None
        self._scanning = asyncio.Lock()
        self._rescan_due = True
        self._next_rescan = 0.0
        self._unwatched_logged = False
        self._real_folder: Path | None = None  # the folder with links resolved, for events
        self._unfit: dict[Path, str] = {}  # skipped paths and why, until they change or go
        self._archive_key: bytes | None = None  # the outbox key, with archive_encrypt
        # Never take our own archive or quarantine when data_dir sits inside the folder.
        own = relative_parts(PurePath(os.path.abspath(config.data_dir)), PurePath(self.folder))
        self._own = PurePath(*own) if own else None

    def _log(self, **fields: Any) -> dict[str, Any]:
        return {"source": self.source.name, **fields}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Watch the folder, look at every file in it, and start taking files."""
        if self._task is not None:
            return
        self._stopping = False
        if self.config.archive_encrypt and self._archive_key is None:
            try:
                key_file = self.config.outbox_key_file
                self._archive_key = await asyncio.to_thread(load_or_create_key, key_file)
            except (OSError, SealError) as exc:  # files still flow; doctor names the key
                self._error(f"archived files cannot be sealed: {_why(exc)}")
                log.error(
                    "Outbox key unusable; archived files stay plain (0600) until it is fixed.",
                    extra=self._log(error=_why(exc)),
                )
        try:  # files an interrupted cross-volume archive left staged go back to be taken
            await asyncio.to_thread(restore_staged, self.folder)
        except OSError as exc:
            log.warning("Staged files could not be put back.", extra=self._log(error=_why(exc)))
        await self.rescan()  # starts folder events, then finds the files already there
        self._task = asyncio.create_task(self._work(), name=f"source-{self.source.name}")

    async def stop(self) -> None:
        """Stop watching; the file in hand is finished first."""
        self._stopping = True
        self._wake.set()
        async with self._scanning:  # a rescan under way ends first; none starts events later
            observer, self._observer = self._observer, None
        if observer is not None:
            await asyncio.to_thread(stop_observer, observer)
        task, self._task = self._task, None
        if task is not None:
            await task
        self.stats.watching = False
        self.stats.mode = ""

    def snapshot(self) -> SourceStats:
        """A copy of the stats, safe to keep."""
        return dataclasses.replace(self.stats, unreadable_now=dict(self.stats.unreadable_now))

    async def _unobserve(self) -> None:
        """Stop folder events while the folder itself cannot be read (a rescan starts them
        again once it can)."""
        observer, self._observer = self._observer, None
        if observer is not None:
            await asyncio.to_thread(stop_observer, observer, 1.0)
        self.stats.watching = False
        self.stats.mode = ""

    def _paths_changed(self, problems: dict[str, str]) -> None:
        """What a rescan found unreadable: each new path or new reason counted and logged
        once, each path that reads again logged once."""
        before = self.stats.unreadable_now
        top = safe_name(str(self.folder))
        for path, reason in problems.items():
            if before.get(path) == reason:
                continue
            self.stats.unreadable += 1
            self._error(f"cannot read {path}: {reason}")
            log.log(
                logging.ERROR if path == top else logging.WARNING,
                "Source path cannot be read; looking again at every rescan, other files flow.",
                extra=self._log(path=path, reason=reason),
            )
        for path in before.keys() - problems.keys():
            log.info("Source path readable again.", extra=self._log(path=path))
        self.stats.unreadable_now = problems

    async def _observe(self) -> None:
        """Start folder events, or start them again when they died (share gone and back)."""
        if self._observer is not None:
            if alive(self._observer):
                return
            observer, self._observer = self._observer, None
            await asyncio.to_thread(stop_observer, observer, 1.0)
            log.warning("Folder events stopped; watching again.", extra=self._log())
        self.stats.watching = False
        self.stats.mode = ""
        drive = await asyncio.to_thread(mapped_drive, self.folder)
        polled = self.source.polled or drive == "remote"  # no change events from a share
        mode = "polling" if polled else "events"
        try:
            self._observer = await asyncio.to_thread(
                start_observer,
                self.folder,
                polled=polled,
                poll_interval=self.source.poll_interval,
                loop=asyncio.get_running_loop(),
                on_file=self.seen,
                on_folder=self._folder_changed,
            )
        except OSError as exc:  # gone, unreachable, or out of inotify watches
            why = (drive == "missing" and missing_drive_hint(self.folder)) or _why(exc)
            self._error(f"cannot watch {self.folder}: {why}")
            log.log(
                logging.DEBUG if self._unwatched_logged else logging.ERROR,
                "Source folder cannot be watched; looking again at every rescan.",
                extra=self._log(folder=str(self.folder), error=why),
            )
            self._unwatched_logged = True
            return
        self._unwatched_logged = False
        self._real_folder = Path(await asyncio.to_thread(os.path.realpath, self.folder))
        self.stats.watching = True
        self.stats.mode = mode
        log.info("Watching source folder.", extra=self._log(folder=str(self.folder), mode=mode))

    # -- finding files --------------------------------------------------------------------

    def _below(self, path: Path) -> tuple[str, ...] | None:
        """The folders and name of `path` below the source folder. An event may name the
        folder by another spelling (a resolved link, as FSEvents does); then it is
        resolved too."""
        parts = relative_parts(path, self.folder)
        if parts is None and self._real_folder is not None:
            parts = relative_parts(Path(os.path.realpath(path)), self._real_folder)
        return parts or None

    def _wanted(self, path: Path, parts: tuple[str, ...]) -> bool:
        if any(part.startswith(".") for part in parts[:-1]):
            return False  # hidden folders (sync tools, trash) are skipped by the scan too
        if self._own is not None and PurePath(*parts[: len(self._own.parts)]) == self._own:
            return False
        return matches(path, self.folder, self.source.include, self.source.exclude)

    def seen(self, path: Path, renamed: bool = False) -> None:
        """A file appeared or changed (called on the loop: events and rescans)."""
        path = long_name(path)  # an event may name a file by its 8.3 short name
        if path.name.lower().endswith(READY_SUFFIX):
            path = path.with_name(path.name[: -len(READY_SUFFIX)])  # its marker came
            renamed = False
        candidate = self._pending.get(path) or self._admit(path)
        if candidate is None:
            return
        candidate.renamed = candidate.renamed or renamed
        self._wake.set()

    def _admit(self, path: Path) -> Candidate | None:
        """A new candidate for a wanted file (or the one it already has under that name)."""
        parts = self._below(path)
        if parts is None:
            return None
        path = self.folder.joinpath(*parts)
        candidate = self._pending.get(path)
        if candidate is None and path not in self._unfit and self._wanted(path, parts):
            candidate = self._pending.add(path, time.monotonic())
            self.stats.pending = len(self._pending)
        return candidate

    def _folder_changed(self) -> None:
        self._rescan_due = True
        self._wake.set()

    async def rescan(self) -> None:
        """Look at every file in the folder: what events missed, and files present at start."""
        async with self._scanning:
            if self._stopping:
                return
            self._rescan_due = False
            self._next_rescan = time.monotonic() + self.source.rescan_seconds
            top = await asyncio.to_thread(folder_problem, self.folder)
            if top is None:
                await self._observe()
            else:
                await self._unobserve()
            own = self.folder / self._own if self._own is not None else None
            skipped = list(self._unfit)
            problems: dict[str, str] = {}
            if top is not None:
                problems[safe_name(str(self.folder))] = top

            def failed(exc: OSError) -> None:  # a folder below that cannot be listed
                where = exc.filename if isinstance(exc.filename, str) else str(self.folder)
                # Not one whose files `exclude` leaves out (`lost+found/**`): nothing missed.
                inside = PurePath(where, "file")
                if matches(inside, PurePath(self.folder), ["**"], self.source.exclude):
                    problems[safe_name(where)] = path_problem(exc)

            def walk() -> tuple[list[Path], set[Path]]:
                found: list[Path] = []
                walked = os.walk(self.folder, onerror=failed) if top is None else iter(())
                for root, dirs, files in walked:
                    here = Path(root)
                    dirs[:] = [d for d in dirs if not d.startswith(".") and here / d != own]
                    found.extend(here / name for name in files)
                # A skipped path is looked at again once it is gone or has become a file.
                settled: set[Path] = set()
                for path in skipped:
                    try:
                        unfit(path, self.folder)
                    except Unfit:
                        continue
                    except OSError:
                        pass
                    settled.add(path)
                return found, settled

            found, settled = await asyncio.to_thread(walk)
            self._paths_changed(problems)
            for path in settled:
                self._unfit.pop(path, None)
            for path in found:
                self.seen(path)

    # -- the loop -------------------------------------------------------------------------

    async def _work(self) -> None:
        while not self._stopping:
            try:
                wait = await self._round()
            except Exception as exc:  # a bug or a failing sink must not end the watcher
                self._error(f"watcher round failed: {_why(exc)}")
                log.exception("Source watcher round failed; going on.", extra=self._log())
                wait = RETRY_SECONDS
            if self._stopping:
                break
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def _round(self) -> float:
        """Rescan when due, take every ready file; seconds until there is more to do."""
        self._wake.clear()  # events from here on wake the next round
        if self._rescan_due or time.monotonic() >= self._next_rescan:
            await self.rescan()
        until_rescan = max(self._next_rescan - time.monotonic(), 0.0)
        if not self._accepting():
            return min(IDLE_SECONDS, until_rescan)
        ready, wait = await self._ready()
        for path in ready:
            if self._stopping or not self._accepting():
                break
            await self._ingest(path)
        return 0.0 if ready else min(wait, until_rescan)

    def _accepting(self) -> bool:
        accepting = self.sink.accepting()
        if accepting == self.stats.paused:
            self.stats.paused = not accepting
            if accepting:
                log.info("Intake resumed.", extra=self._log(pending=len(self._pending)))
            else:
                log.info(
                    "Intake paused by the outbox budget; files wait in the folder.",
                    extra=self._log(pending=len(self._pending)),
                )
        return accepting

    async def _ready(self) -> tuple[list[Path], float]:
        """The complete files, oldest first, and how long until another may be complete."""
        due, wait = self._pending.due(time.monotonic())
        looks = await asyncio.to_thread(look_all, due, self.folder) if due else {}
        for path, seen in list(looks.items()):
            if isinstance(seen, Unfit):
                del looks[path]
                self._skip(path, str(seen))
        ready, later = self._pending.judge(
            looks, time.monotonic(), marker_wait=MARKER_SECONDS, error_wait=IDLE_SECONDS
        )
        if ready and self.source.complete_when == "closed":
            ready, held = await asyncio.to_thread(released, ready)
            hold = max(self.source.settle_seconds, HELD_SECONDS)
            for path in held:
                self._pending.hold(path, time.monotonic(), hold)
                log.debug("File still open in another program; waiting.", extra=self._log())
            if held:
                later = min(later, hold)
        self._count()
        return ready, min(wait, later)

    # -- one file -------------------------------------------------------------------------

    def _count(self) -> None:
        self.stats.pending = len(self._pending)
        self.stats.retrying = self._pending.retrying

    def _forget(self, path: Path) -> None:
        self._pending.forget(path)
        self._count()

    def _done(self, path: Path) -> None:
        self._forget(path)
        self.stats.last_file = path.name

    def _unsettle(self, path: Path) -> None:
        """It changed while we looked: the POS is still writing. Settle it by time again."""
        self._pending.unsettle(path, time.monotonic())
        log.debug("File changed while being read; waiting for it to settle.", extra=self._log())

    def _error(self, text: str) -> None:
        self.stats.last_error = text
        self.stats.last_error_at = datetime.now(self.config.zone).isoformat(timespec="seconds")

    def _skip(self, path: Path, reason: str) -> None:
        """Never open it (a FIFO would block the source): forget it until it changes."""
        self._forget(path)
        self._unfit[path] = reason
        self.stats.unfit += 1
        name = safe_name(path.name)
        self._error(f"{name}: skipped: {reason}")
        log.warning(
            "Path in the source folder skipped: not a file the agent opens.",
            extra=self._log(file=name, reason=reason),
        )

    def _later(self, path: Path, reason: str, *, level: int = logging.WARNING) -> None:
        """Leave the file where it is and try again after a growing pause."""
        attempt, delay = self._pending.later(
            path, time.monotonic(), first=RETRY_SECONDS, most=RETRY_MAX_SECONDS
        )
        self._count()
        self._error(f"{path.name}: {reason}")
        log.log(
            level,
            "File left in place; trying again later.",
            extra=self._log(
                file=path.name,
                error=reason,
                attempt=attempt,
                retry_in=round(delay, 2),
            ),
        )

    async def _ingest(self, path: Path) -> None:
        """Take one file; never raises (but for cancellation). Every line about it, every
        attempt, carries one correlation id, which its records carry to central."""
        candidate = self._pending.get(path)
        if candidate is not None and not candidate.correlation_id:
            candidate.correlation_id = new_correlation_id()
        cid = candidate.correlation_id if candidate is not None else new_correlation_id()
        with bind(source=self.source.name, file=safe_name(path.name), correlation_id=cid):
            try:
                await self._ingest_file(path)
            except Exception as exc:
                log.exception("Unexpected failure while taking a file.", extra=self._log())
                self._later(path, f"unexpected error: {_why(exc)}", level=logging.ERROR)

    async def _ingest_file(self, path: Path) -> None:
        candidate = self._pending.get(path)
        if candidate is None:
            return
        if unsafe_name(path.name):
            # Never opened: its name would inject lines into notes and logs read by line.
            said = "the file name holds a control character; quarantined unread, under a safe name"
            await self._quarantine(path, "", ParseError(said, "file name"))
            return
        try:
            sha256, size, mtime_ns = await asyncio.to_thread(hash_file, path)
        except FileNotFoundError:
            self._forget(path)
            return
        except ChangedError:
            self._unsettle(path)
            return
        except Unfit as exc:  # swapped for a FIFO or a device since it was looked at
            self._skip(path, str(exc))
            return
        except OSError as exc:  # still locked by the POS (Windows), or a share hiccup
            self._later(path, f"cannot read the file: {_why(exc)}", level=logging.INFO)
            return
        settled_on = (candidate.size, candidate.mtime_ns)
        if not (candidate.renamed or candidate.marker) and (size, mtime_ns) != settled_on:
            self._unsettle(path)  # it changed after it settled
            return
        where = self._log(file=path.name, sha256=sha256)
        if candidate.ingested == sha256 or await self.sink.is_ingested(sha256):
            await self._archive(path)
            if candidate.ingested != sha256:
                self.stats.duplicates += 1
                log.info("File already ingested; archived without sending again.", extra=where)
            return
        try:
            handle = await asyncio.to_thread(open_unchanged, path, size, mtime_ns)
        except FileNotFoundError:
            self._forget(path)
            return
        except ChangedError:
            self._unsettle(path)
            return
        except Unfit as exc:
            self._skip(path, str(exc))
            return
        except OSError as exc:
            self._later(path, f"cannot open the file: {_why(exc)}", level=logging.INFO)
            return
        file = IngestFile(self.source.name, str(path), path.name, sha256, size)
        records = Records(
            parse_stream(handle, self.source.format, context=self._context(path, sha256)),
            self.config.store,
        )
        result = await ingest(self.sink, handle, file, records)
        if isinstance(result, ParseError):
            await self._quarantine(path, sha256, result)
            return
        if isinstance(result, BudgetReached):  # it stays, and is taken once there is room
            log.info("File waits for room in the outbox.", extra={**where, "why": str(result)})
            return
        if isinstance(result, Exception):  # a passing failure: the file stays
            if records.read_error is not None:
                self._later(path, f"reading the file failed: {_why(records.read_error)}")
            else:
                reason = f"the outbox could not commit the file: {_why(result)}"
                self._later(path, reason, level=logging.ERROR)
            return
        outcome = result
        candidate.ingested = sha256  # should archiving fail, the retry only archives
        if outcome.already_ingested:
            self.stats.duplicates += 1
        else:
            self.stats.ingested += 1
            self.stats.records += outcome.inserted
        log.info(
            "File ingested.",
            extra={
                **where,
                "records": outcome.inserted,
                "duplicates": outcome.duplicates,
                "skipped": outcome.skipped,
            },
        )
        await self._archive(path)

    def _context(self, path: Path, sha256: str) -> ParseContext:
        return ParseContext(
            file_name=path.name,
            sha256=sha256,
            store=self.config.store,
            timezone=self.config.zone,
            currency=self.config.currency,
            encoding=self.source.encoding,
            delimiter=self.source.delimiter,
            columns=dict(self.source.columns),
            limits=self.config.limits,
            transactions_per_file=self.config.limits.transactions_per_file,
            thousands=self.source.thousands,
        )

    async def _archive(self, path: Path) -> None:
        day = datetime.now(self.config.zone).date().isoformat()
        try:
            target = await asyncio.to_thread(
                archive_file, path, self.config.archive_dir, day, key=self._archive_key
            )
        except FileNotFoundError:
            # Someone moved it first; the records are committed all the same.
            self._done(path)
            return
        except OSError as exc:  # still held by the POS or a scanner, or the disk is full
            held = is_sharing_violation(exc)  # expected on Windows: the file stays, no copy
            level = logging.INFO if held else logging.WARNING
            self._later(path, f"cannot archive the file: {_why(exc)}", level=level)
            return
        self._done(path)
        log.debug("File archived.", extra=self._log(file=path.name, archived_as=str(target)))

    async def _quarantine(self, path: Path, sha256: str, error: ParseError) -> None:
        try:
            target = await asyncio.to_thread(
                quarantine_file,
                path,
                self.config.quarantine_dir,
                source=self.source.name,
                folder=self.folder,
                sha256=sha256,
                reason=error.reason,
                place=error.place,
                when=datetime.now(self.config.zone),
                config_file=self.config_file,
            )
        except FileNotFoundError:
            self._forget(path)
            return
        except OSError as exc:
            self._later(path, f"refused ({error}), but cannot quarantine: {_why(exc)}")
            return
        self._done(path)
        self.stats.quarantined += 1
        self._error(f"{safe_name(path.name)}: {error}")
        log.warning(
            "File refused and quarantined.",
            extra=self._log(
                file=safe_name(path.name),
                sha256=sha256,
                reason=error.reason,
                place=error.place,
                quarantined_as=target.name,
            ),
        )


class Watchers:
    """Every configured source, each on its own task."""

    def __init__(self, config: AgentConfig, sink: FileSink, *, config_file: str = "") -> None:
        self.sources = [
            SourceWatcher(s, config, sink, config_file=config_file) for s in config.sources
        ]

    async def start(self) -> None:
        await asyncio.gather(*(w.start() for w in self.sources))

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.sources))

    async def rescan(self) -> None:
        await asyncio.gather(*(w.rescan() for w in self.sources))

    def stats(self) -> dict[str, SourceStats]:
        return {w.source.name: w.snapshot() for w in self.sources}
