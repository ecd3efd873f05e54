"""The one reconnect loop: connect, run a session while the connection lasts, and connect
again after a jittered, doubling wait whenever it fails or drops, until told to stop.
A broker that never answers a connect (a TLS port spoken to in plain MQTT waits for a
handshake) does not hold up the stop."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ._seam import Connection, MessagingError, Transport

__all__ = ["Backoff", "keep_connected"]


class Backoff:
    """Waits between connection attempts: `first`, doubling up to `longest`, each drawn
    between half and all of its step so that many clients cut off at once (a broker
    restart) do not all come back in the same instant."""

    __slots__ = ("_step", "first", "longest")

    def __init__(self, first: float, longest: float) -> None:
        self.first = first
        self.longest = max(longest, first)
        self._step = first

    def next(self) -> float:
        wait = self._step * random.uniform(0.5, 1.0)
        self._step = min(self._step * 2, self.longest)
        return wait

    def reset(self) -> None:
        self._step = self.first


async def keep_connected(
    transport: Transport,
    stop: asyncio.Event,
    *,
    backoff: Backoff,
    on_connect: Callable[[Connection], Awaitable[None]],
    session: Callable[[Connection], Awaitable[None]],
    on_lost: Callable[[MessagingError, float], Awaitable[None]] | None = None,
    on_closed: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run until `stop` is set. Per connection: `on_connect` (subscribe, announce; the
    backoff starts over once it succeeded), then `session`, which returns when `stop` is
    set or raises MessagingError when the connection breaks. `on_lost` hears each failure
    with the wait before the next attempt; `on_closed` runs after every attempt."""
    while not stop.is_set():
        try:
            async with contextlib.AsyncExitStack() as stack:
                connection = await _enter(stack, transport, stop)
                if connection is None:
                    return
                await on_connect(connection)
                backoff.reset()
                await session(connection)
        except MessagingError as exc:
            wait = backoff.next()
            if on_lost is not None:
                await on_lost(exc, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
        finally:
            if on_closed is not None:
                await on_closed()


async def _enter(
    stack: contextlib.AsyncExitStack, transport: Transport, stop: asyncio.Event
) -> Connection | None:
    """The connection, or None when `stop` came first."""
    entering = asyncio.ensure_future(stack.enter_async_context(transport.connect()))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({entering, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not entering.done():
        entering.cancel()
        with contextlib.suppress(BaseException):
            await entering
        return None
    return entering.result()  # the connection's error, if it failed


async def until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run `work` (a connection's read loop) until it ends or `stop` is set. True when
    `stop` ended it, after cancelling it; an error of its own is raised."""
    reader = asyncio.create_task(work)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if reader in done:
        reader.result()
        return False
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    return True
