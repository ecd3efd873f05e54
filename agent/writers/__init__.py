"""Writers: how an order from central reaches the store's POS, registered by name (the
`writer` key of `[agent.downlink]`), and how reference data does (the `customers` and
`items` keys of `[agent.reference]`).

A writer is its own module and one line of the table at the end of this module. Each
takes the downlink settings and, for writers that call out, an `httpx` transport
(tests pass `httpx.MockTransport`).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from agent.config import AgentConfig, DownlinkSettings, ReferenceSettings

from ._base import DownItem, WriteError, Writer
from ._reference import RefBatch, RefBody, ReferenceWriter, batch_name

__all__ = [
    "BUILTIN",
    "REFERENCE",
    "DownItem",
    "RefBatch",
    "RefBody",
    "ReferenceWriter",
    "WriteError",
    "Writer",
    "batch_name",
    "make_reference_writers",
    "make_writer",
]

Factory = Callable[[DownlinkSettings, httpx.AsyncBaseTransport | None], Writer]
RefFactory = Callable[[ReferenceSettings, str], ReferenceWriter]


def make_writer(
    settings: DownlinkSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Writer:
    """The configured writer (the config model already refuses an unknown name)."""
    return BUILTIN[settings.writer](settings, transport)


def make_reference_writers(config: AgentConfig) -> list[ReferenceWriter]:
    """The configured reference writers (none, one for customers, one for items)."""
    settings = config.reference
    names = [n for n in (settings.customers, settings.items) if n != "none"]
    return [REFERENCE[name](settings, config.store) for name in names]


# The built-in writers: adding one is its own module and one line here.
from .customer_csv import CustomerCsvWriter  # noqa: E402
from .file import FileWriter  # noqa: E402
from .micros_csv import MicrosCsvWriter  # noqa: E402
from .micros_sts import MicrosStsWriter  # noqa: E402
from .poslog import PoslogItemWriter  # noqa: E402

BUILTIN: dict[str, Factory] = {
    "file": FileWriter.from_settings,
    "micros_sts": MicrosStsWriter.from_settings,
}

REFERENCE: dict[str, RefFactory] = {
    "customer_csv": lambda settings, store: CustomerCsvWriter.from_settings(settings),
    "micros_csv": lambda settings, store: MicrosCsvWriter.from_settings(settings),
    "poslog": PoslogItemWriter.from_settings,
}
