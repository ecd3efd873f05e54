"""Watching the POS export folders: find complete files, parse them into the sink, then
archive them; refuse bad ones into quarantine with a note.

Events come from watchdog (native on local disks, polling on network shares) and from a
periodic full rescan that catches what events missed. A file is taken once complete:
at once when it arrived by rename (`.tmp` → final name) or has its `.ready` marker,
otherwise once its size and modification time have held for the settle window.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from agent.config import AgentConfig, SourceSettings
from agent.contract.logs import bind
from agent.parsers import ParseContext, Parsed, ParseError, parse_stream

from ._files import archive_file, hash_file, matches, quarantine_file
from ._sink import FileSink, IngestFile

__all__ = ["SourceStats", "SourceWatcher", "Watchers"]

log = logging.getLogger("tillbridge.agent.sources")

RETRY_SECONDS = 5.0  # a locked file, or a sink that failed for a passing reason


@dataclasses.dataclass(slots=True)
class SourceStats:
    """What one source has done, for status and heartbeats."""

    pending: int = 0  # seen and waiting (settling, or held back by the budget)
    ingested: int = 0
    duplicates: int = 0  # files whose content was ingested before
    quarantined: int = 0
    records: int = 0
    paused: bool = False  # the outbox budget holds new files back
    watching: bool = False
    last_file: str | None = None
    last_error: str | None = None


@dataclasses.dataclass(slots=True)
class _Candidate:
    size: int = -1
    mtime_ns: int = -1
    stable_since: float = 0.0
    at_once: bool = False  # arrived by rename: complete now
    not_before: float = 0.0  # retry later after a passing failure


class _Handler(FileSystemEventHandler):
    """Hands watchdog's events (on its own thread) to the loop, thread-safely."""

    def __init__(self, watcher: SourceWatcher, loop: asyncio.AbstractEventLoop) -> None:
        self._watcher = watcher
        self._loop = loop

    def _hand(self, path: str | bytes, renamed: bool) -> None:
        text = os.fsdecode(path)
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._loop.call_soon_threadsafe(self._watcher.seen, Path(text), renamed)

    def on_created(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._hand(event.src_path, False)

    def on_modified(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._hand(event.src_path, False)

    def on_closed(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._hand(event.src_path, False)

    def on_moved(self, event: FileSystemEvent) -> None:
        if not event.is_directory and event.dest_path:
            self._hand(event.dest_path, True)


class SourceWatcher:
    """One configured folder: files are taken one at a time, oldest first."""

    def __init__(self, source: SourceSettings, config: AgentConfig, sink: FileSink) -> None:
        self.source = source
        self.config = config
        self.sink = sink
        self.folder = Path(source.path)
        self.stats = SourceStats()
        self._candidates: dict[Path, _Candidate] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._observer: BaseObserver | None = None
        self._task: asyncio.Task[None] | None = None
        self._own = {config.data_dir.resolve()}  # never take our own archive or quarantine
        self.config_file = "<config file>"  # named in quarantine notes when the daemon knows it

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._work(), name=f"source-{self.source.name}")
        await self._observe()
        await self.rescan()

    async def _observe(self) -> None:
        if self._observer is not None:
            return
        if not self.folder.is_dir():
            self.stats.watching = False
            self.stats.last_error = f"folder not found: {self.folder}"
            log.error(
                "Source folder not found; looking again at every rescan.",
                extra={"source": self.source.name, "folder": str(self.folder)},
            )
            return
        observer: BaseObserver = (
            PollingObserver(timeout=self.source.poll_interval) if self.source.polled else Observer()
        )
        observer.schedule(
            _Handler(self, asyncio.get_running_loop()), str(self.folder), recursive=True
        )
        try:
            await asyncio.to_thread(observer.start)
        except OSError as exc:  # e.g. inotify watch limit; the rescan still finds files
            log.warning(
                "Folder events unavailable; relying on rescans.",
                extra={"source": self.source.name, "error": str(exc)},
            )
            return
        self._observer = observer
        self.stats.watching = True
        log.info(
            "Watching source folder.",
            extra={
                "source": self.source.name,
                "folder": str(self.folder),
                "mode": "polling" if self.source.polled else "events",
            },
        )

    async def stop(self) -> None:
        """Stop watching; the file in hand is finished first."""
        self._stopping = True
        self._wake.set()
        if self._observer is not None:
            observer, self._observer = self._observer, None
            observer.stop()
            await asyncio.to_thread(observer.join, 10)
        if self._task is not None:
            await self._task
            self._task = None

    # -- finding files --------------------------------------------------------------------

    def _wanted(self, path: Path) -> bool:
        if not matches(path, self.folder, self.source.include, self.source.exclude):
            return False
        with contextlib.suppress(OSError):
            resolved = path.resolve()
            if any(resolved.is_relative_to(own) for own in self._own):
                return False
        return True

    def seen(self, path: Path, renamed: bool = False) -> None:
        """A file appeared or changed (called on the loop)."""
        if path.name.endswith(".ready"):
            path = path.with_name(path.name[: -len(".ready")])  # its marker came
        if not self._wanted(path):
            return
        candidate = self._candidates.setdefault(path, _Candidate(stable_since=time.monotonic()))
        candidate.at_once = candidate.at_once or renamed
        self.stats.pending = len(self._candidates)
        self._wake.set()

    async def rescan(self) -> None:
        """Look at every file in the folder: catches what events missed."""
        if self._observer is None:
            await self._observe()
        if not self.folder.is_dir():
            return

        def walk() -> list[Path]:
            found: list[Path] = []
            for root, dirs, files in os.walk(self.folder):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.extend(Path(root) / name for name in files)
            return found

        for path in await asyncio.to_thread(walk):
            self.seen(path)

    # -- taking files ---------------------------------------------------------------------

    def _ready(self, path: Path, candidate: _Candidate, now: float) -> bool:
        """Complete: renamed into place, marked ready, or unchanged for the settle window."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            del self._candidates[path]
            return False
        except OSError:
            return False
        marker = Path(str(path) + ".ready").exists()
        if self.source.require_ready_marker and not marker:
            return False
        if (stat.st_size, stat.st_mtime_ns) != (candidate.size, candidate.mtime_ns):
            candidate.size, candidate.mtime_ns = stat.st_size, stat.st_mtime_ns
            candidate.stable_since = now
            if not (candidate.at_once or marker):
                return False
        if candidate.at_once or marker:
            return True
        return now - candidate.stable_since >= self.source.settle_seconds

    def _next(self) -> Path | None:
        now = time.monotonic()
        ready = [
            (c.mtime_ns, p.name, p)
            for p, c in list(self._candidates.items())
            if c.not_before <= now and self._ready(p, c, now)
        ]
        self.stats.pending = len(self._candidates)
        return min(ready)[2] if ready else None

    async def _work(self) -> None:
        while not self._stopping:
            if not self.sink.accepting():
                if not self.stats.paused:
                    self.stats.paused = True
                    log.info(
                        "Intake paused by the outbox budget; files wait in the folder.",
                        extra={"source": self.source.name},
                    )
                await self._sleep(1.0)
                continue
            if self.stats.paused:
                self.stats.paused = False
                log.info("Intake resumed.", extra={"source": self.source.name})
            path = self._next()
            if path is None:
                wait = self.source.settle_seconds if self._candidates else 60.0
                await self._sleep(max(min(wait / 2, 1.0), 0.02))
                continue
            try:
                await self._take(path)
            except Exception as exc:
                self._later(path, f"unexpected error: {exc}")
                log.exception(
                    "File could not be processed; trying again later.",
                    extra={"source": self.source.name, "file": path.name},
                )

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _later(self, path: Path, reason: str) -> None:
        candidate = self._candidates.get(path)
        if candidate is not None:
            candidate.not_before = time.monotonic() + RETRY_SECONDS
        self.stats.last_error = reason

    def _done(self, path: Path) -> None:
        self._candidates.pop(path, None)
        self.stats.pending = len(self._candidates)
        self.stats.last_file = path.name

    async def _take(self, path: Path) -> None:
        source = self.source.name
        try:
            sha256, size = await asyncio.to_thread(hash_file, path)
        except FileNotFoundError:
            self._done(path)
            return
        except OSError as exc:  # still locked by the POS (Windows), or a share hiccup
            self._later(path, f"cannot read {path.name}: {exc.strerror or exc}")
            return
        with bind(source=source, file=path.name, sha256=sha256[:16]):
            if await self.sink.is_ingested(sha256):
                await self._archive(path)
                self.stats.duplicates += 1
                log.info("File already ingested; archived without sending again.")
                return
            file = IngestFile(source, str(path), path.name, sha256, size)
            context = ParseContext(
                file_name=path.name,
                sha256=sha256,
                store=self.config.store,
                timezone=self.config.zone,
                currency=self.config.currency,
                encoding=self.source.encoding,
                delimiter=self.source.delimiter,
                columns=dict(self.source.columns),
            )
            try:
                handle: BinaryIO = await asyncio.to_thread(path.open, "rb")
            except OSError as exc:
                self._later(path, f"cannot open {path.name}: {exc.strerror or exc}")
                return
            try:
                items = _own_store(
                    parse_stream(handle, self.source.format, context=context), self.config.store
                )
                outcome = await self.sink.ingest(file, items)
            except ParseError as exc:
                handle.close()
                await self._quarantine(path, sha256, exc)
                return
            except OSError as exc:  # the outbox could not commit (disk full, I/O error)
                handle.close()
                self._later(path, f"outbox could not commit {path.name}: {exc}")
                log.error(
                    "File could not be committed; it stays and is taken again.",
                    extra={"error": str(exc)},
                )
                return
            finally:
                handle.close()
            await self._archive(path)
            self.stats.ingested += 1
            self.stats.records += outcome.inserted
            log.info(
                "File ingested.",
                extra={
                    "records": outcome.inserted,
                    "duplicates": outcome.duplicates,
                    "skipped": outcome.skipped,
                },
            )

    async def _archive(self, path: Path) -> None:
        day = datetime.now(self.config.zone).date().isoformat()
        await asyncio.to_thread(archive_file, path, self.config.archive_dir, day)
        self._done(path)

    async def _quarantine(self, path: Path, sha256: str, error: ParseError) -> None:
        await asyncio.to_thread(
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
        self._done(path)
        self.stats.quarantined += 1
        self.stats.last_error = f"{path.name}: {error}"
        log.warning(
            "File refused and quarantined.", extra={"reason": error.reason, "place": error.place}
        )


def _own_store(items: Iterator[Parsed], store: str) -> Iterator[Parsed]:
    """Refuse a file that speaks for another store: central would refuse its records, and
    this agent must never send as another store."""
    for item in items:
        if item.store != store:
            raise ParseError(
                f"the file is for store {item.store!r}, this agent sends for store {store!r}; "
                "put it in that store's folder, or correct agent.store",
                getattr(item, "place", "")
                or getattr(getattr(item, "source", None), "position", ""),
            )
        yield item


class Watchers:
    """Every configured source, each on its own task."""

    def __init__(self, config: AgentConfig, sink: FileSink, *, config_file: str = "") -> None:
        self.sources = [SourceWatcher(s, config, sink) for s in config.sources]
        for watcher in self.sources:
            watcher.config_file = config_file or watcher.config_file

    async def start(self) -> None:
        for watcher in self.sources:
            await watcher.start()

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.sources))

    async def rescan(self) -> None:
        for watcher in self.sources:
            await watcher.rescan()

    def stats(self) -> dict[str, SourceStats]:
        return {w.source.name: dataclasses.replace(w.stats) for w in self.sources}
