"""Watching the POS export folders: find complete files, parse them, hand them to the sink."""

from ._files import QuarantinedFile, list_quarantined, matches, retry_quarantined
from ._sink import FileSink, IngestFile, IngestOutcome
from ._watch import SourceStats, SourceWatcher, Watchers

__all__ = [
    "FileSink",
    "IngestFile",
    "IngestOutcome",
    "QuarantinedFile",
    "SourceStats",
    "SourceWatcher",
    "Watchers",
    "list_quarantined",
    "matches",
    "retry_quarantined",
]
