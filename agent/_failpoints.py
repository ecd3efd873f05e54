"""Named places where a test can stop the agent dead, as a power cut or SIGKILL would, to
prove that a stop at exactly that point loses nothing (the fail points of etcd's gofail
and TiKV's fail-rs). Inert unless `TILLBRIDGE_FAILPOINTS` names them.

`TILLBRIDGE_FAILPOINTS="outbox.moved_aside,reread.file_done=3"` kills the process the
first time it reaches `outbox.moved_aside`, or the third time it reaches
`reread.file_done`. Every fail point is listed in `POINTS`.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["ENV", "POINTS", "hit"]

ENV = "TILLBRIDGE_FAILPOINTS"

POINTS = {
    "outbox.wal_moved_aside": "a damaged outbox's WAL is moved aside, its main file not yet",
    "outbox.moved_aside": "a damaged outbox is moved aside, no new one created yet",
    "outbox.created": "a new outbox and its re-read mark are committed, nothing re-read",
    "reread.file_done": "an archived file is committed to the rebuilt outbox",
    "reread.all_done": "every archived file is re-read, the mark not yet cleared",
    "reread.cleared": "the re-read mark is cleared",
    "ingest.committing": "a file's records are inserted, not yet committed (POS or archive)",
    "ingest.committed": "a file's records are committed, the file not yet archived",
    "downlink.committed": "a downlink batch is committed at the store, not yet acknowledged",
}


def _wanted() -> dict[str, int]:
    spec = os.environ.get(ENV, "")
    wanted: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition("=")
        if name not in POINTS:
            raise SystemExit(f"{ENV}: unknown fail point {name!r}")
        wanted[name] = int(count) if count else 1
    return wanted


_WANTED = _wanted()
_SEEN: dict[str, int] = {}


def hit(name: str) -> None:
    """Reached `name`: die here, without cleaning up, when a test asked for it."""
    if not _WANTED:
        return
    assert name in POINTS, name
    _SEEN[name] = _SEEN.get(name, 0) + 1
    if _SEEN[name] == _WANTED.get(name):
        sys.stderr.write(f"fail point {name} reached: killing the process\n")
        sys.stderr.flush()
        kill = getattr(signal, "SIGKILL", None)
        if kill is not None:
            os.kill(os.getpid(), kill)
        os._exit(137)
