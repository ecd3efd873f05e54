"""The way down at the store: orders from central, durable in SQLite before they are
acknowledged, then written to the POS by the configured writer (`agent.writers`)."""

from ._downlink import Downlink
from ._store import DownlinkStore, DownRow, DownSummary, summarise

__all__ = ["DownRow", "DownSummary", "Downlink", "DownlinkStore", "summarise"]
