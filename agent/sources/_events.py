"""Folder events from watchdog: native (inotify, ReadDirectoryChangesW, FSEvents) on local
disks, polling on network shares. Watchdog calls back on its own thread; every event is
handed to the event loop with `call_soon_threadsafe` and nothing else is touched there."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

__all__ = ["alive", "start_observer", "stop_observer"]

OnFile = Callable[[Path, bool], None]  # (path, arrived by rename)
OnFolder = Callable[[], None]  # a folder appeared or vanished: look at everything again


class _Handler(FileSystemEventHandler):
    def __init__(
        self, loop: asyncio.AbstractEventLoop, root: str, on_file: OnFile, on_folder: OnFolder
    ) -> None:
        self._loop = loop
        self._root = os.path.normcase(os.path.abspath(root))
        self._on_file = on_file
        self._on_folder = on_folder

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are stopping
            self._loop.call_soon_threadsafe(callback, *args)

    def _file(self, path: str | bytes, renamed: bool) -> None:
        self._call(self._on_file, Path(os.fsdecode(path)), renamed)

    def on_created(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            self._call(self._on_folder)  # a folder copied in may already hold files
        else:
            self._file(event.src_path, False)

    def on_modified(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._file(event.src_path, False)

    def on_closed(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._file(event.src_path, False)

    def on_moved(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            self._call(self._on_folder)
        elif event.dest_path:
            self._file(event.dest_path, True)

    def on_deleted(self, event: FileSystemEvent) -> None:
        # Only the watched folder itself matters: the watch is gone with it.
        path = os.path.normcase(os.path.abspath(os.fsdecode(event.src_path)))
        if event.is_directory and path == self._root:
            self._call(self._on_folder)


def start_observer(
    folder: Path,
    *,
    polled: bool,
    poll_interval: float,
    loop: asyncio.AbstractEventLoop,
    on_file: OnFile,
    on_folder: OnFolder,
) -> BaseObserver:
    """Start watching `folder` and everything below it (blocking: call it off the loop).

    Raises OSError when the folder cannot be watched (gone, or the inotify watch limit).
    """
    observer: BaseObserver = PollingObserver(timeout=poll_interval) if polled else Observer()
    observer.schedule(_Handler(loop, str(folder), on_file, on_folder), str(folder), recursive=True)
    observer.daemon = True  # never keep the process alive on its own
    try:
        observer.start()
    except BaseException:
        with contextlib.suppress(Exception):
            observer.stop()
        raise
    return observer


def alive(observer: BaseObserver) -> bool:
    """False once the observer or one of its emitters has stopped (the folder vanished, a
    share went away): then the watcher starts a new one."""
    return observer.is_alive() and all(e.is_alive() for e in observer.emitters)


def stop_observer(observer: BaseObserver, timeout: float = 10.0) -> None:
    """Stop and join (blocking: call it off the loop)."""
    with contextlib.suppress(Exception):
        observer.stop()
    with contextlib.suppress(RuntimeError):  # never started
        observer.join(timeout)
