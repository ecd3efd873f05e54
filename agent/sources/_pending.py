"""Files seen in a source folder and not yet taken, and the rule for when one is complete:
at once when it arrived by rename or has its `.ready` marker, otherwise once its size and
mtime held for the settle window; with `trust_name`, at once whatever way it came. Pure
bookkeeping: the caller looks at the disk (and, on Windows, whether the POS holds it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

from ._files import Look

__all__ = ["Candidate", "Pending"]


@dataclasses.dataclass(slots=True)
class Candidate:
    """One file waiting to be taken."""

    stable_since: float
    size: int = -1
    mtime_ns: int = -1
    renamed: bool = False  # arrived by rename: complete now
    marker: bool = False  # its `.ready` marker is there
    not_before: float = 0.0  # after a passing failure, or a change seen while reading
    failures: int = 0
    ingested: str | None = None  # sha256 committed, archiving still to do
    correlation_id: str = ""  # given at the first attempt; its records carry it to central


class Pending:
    """The waiting files of one source."""

    def __init__(
        self, *, settle_seconds: float, require_marker: bool, trust_name: bool = False
    ) -> None:
        self.settle_seconds = settle_seconds
        self.require_marker = require_marker
        self.trust_name = trust_name  # a matching name appears only by rename: complete
        self._files: dict[Path, Candidate] = {}

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[Path]:
        return iter(self._files)

    def get(self, path: Path) -> Candidate | None:
        return self._files.get(path)

    def add(self, path: Path, now: float) -> Candidate:
        candidate = self._files.get(path)
        if candidate is None:
            candidate = self._files[path] = Candidate(stable_since=now)
        return candidate

    def forget(self, path: Path) -> None:
        self._files.pop(path, None)

    @property
    def retrying(self) -> int:
        return sum(1 for c in self._files.values() if c.failures)

    def due(self, now: float) -> tuple[list[Path], float]:
        """The files to look at now, and the wait until the next one left for later is."""
        wait = float("inf")
        paths: list[Path] = []
        for path, candidate in self._files.items():
            if candidate.not_before > now:
                wait = min(wait, candidate.not_before - now)
            else:
                paths.append(path)
        return paths, wait

    def judge(
        self,
        looks: Mapping[Path, Look | OSError | None],
        now: float,
        *,
        marker_wait: float,
        error_wait: float,
    ) -> tuple[list[Path], float]:
        """The complete files among those looked at, oldest first (mtime, then name), and
        the wait until another may be complete. Vanished files are forgotten."""
        wait = float("inf")
        ready: list[tuple[int, str, str, Path]] = []
        for path, seen in looks.items():
            candidate = self._files.get(path)
            if candidate is None:
                continue  # taken meanwhile
            if seen is None:
                self.forget(path)
                continue
            if isinstance(seen, OSError):
                wait = min(wait, error_wait)
                continue
            candidate.marker = seen.marker
            if self.require_marker and not seen.marker:
                wait = min(wait, marker_wait)  # its event wakes us; this is a safety net
                continue
            if (seen.size, seen.mtime_ns) != (candidate.size, candidate.mtime_ns):
                candidate.size, candidate.mtime_ns = seen.size, seen.mtime_ns
                candidate.stable_since = now
            if candidate.renamed or seen.marker or self.trust_name:
                left = 0.0
            else:
                left = candidate.stable_since + self.settle_seconds - now
            if left <= 0:
                ready.append((seen.mtime_ns, path.name, str(path), path))
            else:
                wait = min(wait, left)
        return [item[3] for item in sorted(ready)], wait

    def unsettle(self, path: Path, now: float) -> None:
        """It changed while being read: the POS is still writing. Settle it by time again."""
        candidate = self._files.get(path)
        if candidate is not None:
            candidate.size = candidate.mtime_ns = -1
            candidate.renamed = False
            candidate.not_before = now + max(self.settle_seconds, 0.05)

    def hold(self, path: Path, now: float, wait: float) -> None:
        """Another process still holds it open: look again after `wait`, from scratch."""
        candidate = self._files.get(path)
        if candidate is not None:
            candidate.stable_since = now
            candidate.not_before = now + wait

    def later(self, path: Path, now: float, *, first: float, most: float) -> tuple[int, float]:
        """Leave it for a pause that doubles with each failure; (attempts, pause)."""
        candidate = self._files.get(path)
        if candidate is None:
            return 1, first
        candidate.failures += 1
        delay = min(first * 2 ** (candidate.failures - 1), most)
        candidate.not_before = now + delay
        return candidate.failures, delay
