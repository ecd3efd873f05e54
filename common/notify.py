"""The systemd notify protocol, spoken directly: a datagram to `$NOTIFY_SOCKET`.

READY=1 once the daemon takes files, STATUS= for `systemctl status`, WATCHDOG=1
on every healthy tick, STOPPING=1 on the way out. Outside systemd (no socket in
the environment, or on Windows) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        watchdog = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_seconds = int(watchdog) / 1e6 if watchdog.isdigit() and mine else None

    @property
    def enabled(self) -> bool:
        return bool(self.address) and hasattr(socket, "AF_UNIX")

    def send(self, **fields: str) -> bool:
        """Send `KEY=value` lines; True when systemd received them."""
        if not self.enabled or self.address is None:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode()
        # A leading '@' names a socket in the abstract namespace.
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(message)
        except OSError as exc:
            log.warning("Service manager notification failed.", extra={"error": str(exc)})
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send(ready="1", status=status) if status else self.send(ready="1")

    def status(self, text: str) -> bool:
        return self.send(status=text)

    def watchdog(self) -> bool:
        return self.send(watchdog="1")

    def stopping(self) -> bool:
        return self.send(stopping="1")

    async def keep_alive(self, stop: asyncio.Event) -> None:
        """WATCHDOG=1 at half the service manager's watchdog interval until `stop` is set."""
        if not self.enabled or self.watchdog_seconds is None:
            await stop.wait()
            return
        while not stop.is_set():
            self.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.watchdog_seconds / 2)
