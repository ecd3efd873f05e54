"""What the relay's HTTP work shares: the transport a test or the dry run puts under a
target (`TransportFactory`), one client per target with the relay's own user agent, and
the loop every poller (order sources, reference feeds) runs: a bad poll is logged and
counted, and the next one comes on time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx

from .connectors import TargetSettings

__all__ = ["PollCounts", "TransportFactory", "poll_forever", "target_client"]

TransportFactory = Callable[[TargetSettings], httpx.AsyncBaseTransport | None]
"""The transport under a target's client (None: the network)."""


_HTTPX_DEFAULT = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's own default, for a client that names no limits."""


class PollCounts(Protocol):
    errors: int
    last_error: str


def target_client(
    target: TargetSettings,
    transport_for: TransportFactory | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    limits: httpx.Limits | None = None,
) -> httpx.AsyncClient:
    """An HTTP client for one target: its timeout, and the `transport` given or the one
    `transport_for` puts under it (tests, the dry run), else the network."""
    if transport is None and transport_for is not None:
        transport = transport_for(target)
    return httpx.AsyncClient(
        transport=transport,
        timeout=target.timeout_seconds,
        limits=limits or _HTTPX_DEFAULT,
        headers={"User-Agent": "tillbridge-central"},
    )


async def poll_forever(
    poll: Callable[[], Awaitable[Any]],
    stop: asyncio.Event,
    interval: float,
    counts: PollCounts,
    *,
    failed: str,
    extra: dict[str, str],
    log: logging.Logger,
) -> None:
    """Call `poll` every `interval` seconds until `stop`; a poll that raises is logged as
    `failed` and counted in `counts`, and the loop goes on."""
    while not stop.is_set():
        try:
            await poll()
        except Exception as exc:  # the loop outlives a bad poll; it is logged
            counts.errors += 1
            counts.last_error = str(exc)[:300]
            log.exception(failed, extra=extra)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
