"""Writers: how an order from central reaches the store's POS, registered by name (the
`writer` key of `[agent.downlink]`).

A writer is its own module and one line of the table at the end of this module. Each
takes the downlink settings and, for writers that call out, an `httpx` transport
(tests pass `httpx.MockTransport`).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from agent.config import DownlinkSettings

from ._base import DownItem, WriteError, Writer

__all__ = ["BUILTIN", "DownItem", "WriteError", "Writer", "make_writer"]

Factory = Callable[[DownlinkSettings, httpx.AsyncBaseTransport | None], Writer]


def make_writer(
    settings: DownlinkSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Writer:
    """The configured writer (the config model already refuses an unknown name)."""
    return BUILTIN[settings.writer](settings, transport)


# The built-in writers: adding one is its own module and one line here.
from .file import FileWriter  # noqa: E402
from .micros_sts import MicrosStsWriter  # noqa: E402

BUILTIN: dict[str, Factory] = {
    "file": FileWriter.from_settings,
    "micros_sts": MicrosStsWriter.from_settings,
}
