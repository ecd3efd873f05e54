"""Process plumbing both daemons share: stopping cleanly on SIGTERM / SIGINT (and on
Windows, where the loop cannot take signal handlers, through `signal.signal`)."""

from __future__ import annotations

import asyncio
import signal
import sys

__all__ = ["stop_on_signals"]


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` when the service manager or an operator asks the process to end."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if sys.platform == "win32":
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        else:
            loop.add_signal_handler(sig, stop.set)
