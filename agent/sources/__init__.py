"""Watching the POS export folders: find complete files, parse them, hand them to the sink;
archive what was taken and quarantine what was refused."""

from ._files import (
    archive_days,
    folder_problem,
    purge_archive,
    safe_name,
    seal_archive,
    sealed_key_ids,
)
from ._glob import matches
from ._quarantine import (
    ERROR_SUFFIX,
    QuarantinedFile,
    list_quarantined,
    quarantine_copy,
    retry_quarantined,
)
from ._sealed import clear_scratch, copy_archived_file, read_archived_file
from ._share import missing_drive_hint
from ._sink import BudgetReached, FileSink, IngestFile, IngestOutcome
from ._watch import SourceStats, SourceWatcher, Watchers

__all__ = [
    "ERROR_SUFFIX",
    "BudgetReached",
    "FileSink",
    "IngestFile",
    "IngestOutcome",
    "QuarantinedFile",
    "SourceStats",
    "SourceWatcher",
    "Watchers",
    "archive_days",
    "clear_scratch",
    "copy_archived_file",
    "folder_problem",
    "list_quarantined",
    "matches",
    "missing_drive_hint",
    "purge_archive",
    "quarantine_copy",
    "read_archived_file",
    "retry_quarantined",
    "safe_name",
    "seal_archive",
    "sealed_key_ids",
]
