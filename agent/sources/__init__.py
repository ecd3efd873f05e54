"""Watching the POS export folders: find complete files, parse them, hand them to the sink."""

from ._sink import FileSink, IngestFile, IngestOutcome

__all__ = ["FileSink", "IngestFile", "IngestOutcome"]
