"""Group commit: every write of the outbox goes through one task, which runs the jobs
that are waiting in one transaction and pays one fsync for all of them.

Each job runs inside its own savepoint, so a job that fails (a file whose parser
refuses it part-way) rolls back alone and the others still commit. The in-memory
state that mirrors the database (next seq, counters) is snapshotted before each job
and restored when its changes are undone, so seqs stay gap-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiosqlite

__all__ = ["GroupWriter", "Job"]

log = logging.getLogger("tillbridge.agent.outbox")

Job = Callable[[aiosqlite.Connection], Awaitable[Any]]


class Mirrored(Protocol):
    """In-memory state that must roll back with the database."""

    def snapshot(self) -> object: ...

    def restore(self, snapshot: object) -> None: ...


MAX_JOBS_PER_COMMIT = 256


class _Pending:
    __slots__ = ("durable", "future", "job")

    def __init__(self, job: Job, durable: bool) -> None:
        self.job = job
        self.durable = durable
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class GroupWriter:
    """Runs write jobs on one connection, many per transaction."""

    def __init__(self, db: aiosqlite.Connection, state: Mirrored, *, max_wait_ms: int) -> None:
        self._db = db
        self._state = state
        self._max_wait = max_wait_ms / 1000
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self.jobs = 0
        self._synced = True  # the connection opens with synchronous=FULL

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-writer")

    async def stop(self) -> None:
        """Finish the jobs already submitted, then stop."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def submit(self, job: Job, *, durable: bool = True) -> Any:
        """Run `job` in the next transaction; returns its result once that transaction committed.

        A durable job's commit is on disk (fsync) before this returns. Bookkeeping that may be
        lost harmlessly on power failure (sent and acked marks: the rows would only be sent
        again, and central drops duplicates) passes `durable=False` and skips the fsync; the
        next durable commit carries it to disk, since the WAL is written in order.
        """
        if self._task is None or self._task.done():
            raise RuntimeError("the outbox is closed")
        pending = _Pending(job, durable)
        self._queue.put_nowait(pending)
        return await pending.future

    async def _gather(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch = [first]
        stop = False
        loop = asyncio.get_running_loop()
        # Under load (more jobs already waiting) wait briefly for more to share the fsync.
        deadline = loop.time() + (self._max_wait if not self._queue.empty() else 0)
        while len(batch) < MAX_JOBS_PER_COMMIT:
            try:
                timeout = deadline - loop.time()
                item = (
                    self._queue.get_nowait()
                    if timeout <= 0
                    else await asyncio.wait_for(self._queue.get(), timeout)
                )
            except (asyncio.QueueEmpty, TimeoutError):
                break
            if item is None:
                stop = True
                break
            batch.append(item)
        return batch, stop

    async def _run(self) -> None:
        db = self._db
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            batch, stop = await self._gather(first)
            done: list[tuple[_Pending, Any]] = []
            failed: list[tuple[_Pending, BaseException]] = []
            at_begin = self._state.snapshot()
            durable = any(item.durable for item in batch)
            try:
                if durable != self._synced:
                    await db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                    self._synced = durable
                await db.execute("BEGIN IMMEDIATE")
                for item in batch:
                    before = self._state.snapshot()
                    await db.execute("SAVEPOINT job")
                    try:
                        result = await item.job(db)
                    except Exception as exc:  # noqa: BLE001 - the job's error goes to its caller
                        await db.execute("ROLLBACK TO job")
                        await db.execute("RELEASE job")
                        self._state.restore(before)
                        failed.append((item, exc))
                    else:
                        await db.execute("RELEASE job")
                        done.append((item, result))
                await db.commit()
            except Exception as exc:  # noqa: BLE001 - the commit failed: nothing of it is durable
                log.error("Outbox commit failed.", extra={"error": str(exc), "jobs": len(batch)})
                with contextlib.suppress(Exception):
                    await db.rollback()
                self._state.restore(at_begin)
                failed = [(item, exc) for item in batch]
                done = []
            self.commits += 1
            self.jobs += len(batch)
            for item, result in done:
                if not item.future.done():
                    item.future.set_result(result)
            for item, error in failed:
                if not item.future.done():
                    item.future.set_exception(error)
