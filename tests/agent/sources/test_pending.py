"""When a waiting file counts as complete, in what order files are taken, and how long a
file left for later waits: the rules alone, with made-up looks and clocks."""

from __future__ import annotations

from pathlib import Path

from agent.sources._files import Look
from agent.sources._pending import Pending

A, B, C = Path("/pos/a.csv"), Path("/pos/b.csv"), Path("/pos/c.csv")


def test_a_file_is_complete_once_size_and_mtime_held_for_the_window() -> None:
    pending = Pending(settle_seconds=2.0, require_marker=False)
    pending.add(A, now=0.0)
    assert pending.judge({A: Look(10, 1, False)}, 0.0, marker_wait=5, error_wait=1) == ([], 2.0)
    assert pending.judge({A: Look(20, 2, False)}, 1.5, marker_wait=5, error_wait=1) == ([], 2.0)
    assert pending.judge({A: Look(20, 2, False)}, 3.0, marker_wait=5, error_wait=1)[0] == []
    assert pending.judge({A: Look(20, 2, False)}, 3.5, marker_wait=5, error_wait=1)[0] == [A]


def test_a_rename_or_a_marker_makes_a_file_complete_at_once() -> None:
    pending = Pending(settle_seconds=60.0, require_marker=False)
    pending.add(A, now=0.0).renamed = True
    pending.add(B, now=0.0)
    looks = {A: Look(1, 5, False), B: Look(1, 4, True)}
    assert pending.judge(looks, 0.0, marker_wait=5, error_wait=1)[0] == [B, A]  # oldest first


def test_a_required_marker_is_waited_for() -> None:
    pending = Pending(settle_seconds=0.0, require_marker=True)
    pending.add(A, now=0.0)
    assert pending.judge({A: Look(1, 1, False)}, 9.0, marker_wait=5, error_wait=1) == ([], 5)
    assert pending.judge({A: Look(1, 1, True)}, 9.0, marker_wait=5, error_wait=1)[0] == [A]


def test_order_is_mtime_then_name_and_vanished_files_are_forgotten() -> None:
    pending = Pending(settle_seconds=0.0, require_marker=False)
    for path in (C, B, A):
        pending.add(path, now=0.0)
    looks = {C: Look(1, 1, False), B: Look(1, 2, False), A: Look(1, 2, False)}
    assert pending.judge(looks, 1.0, marker_wait=5, error_wait=1)[0] == [C, A, B]
    pending.judge({C: None}, 1.0, marker_wait=5, error_wait=1)
    assert sorted(pending) == [A, B]
    ready, wait = pending.judge({A: OSError(5, "I/O")}, 1.0, marker_wait=5, error_wait=1)
    assert (ready, wait) == ([], 1)


def test_a_file_left_for_later_waits_longer_each_time() -> None:
    pending = Pending(settle_seconds=0.0, require_marker=False)
    pending.add(A, now=0.0)
    pauses = [pending.later(A, 0.0, first=5, most=60)[1] for _ in range(6)]
    assert pauses == [5, 10, 20, 40, 60, 60]
    assert pending.retrying == 1
    assert pending.due(10.0) == ([], 50.0)
    assert pending.due(60.0) == ([A], float("inf"))


def test_a_change_while_reading_starts_the_window_again() -> None:
    pending = Pending(settle_seconds=1.0, require_marker=False)
    candidate = pending.add(A, now=0.0)
    candidate.renamed = True
    pending.unsettle(A, now=5.0)
    assert pending.due(5.5) == ([], 0.5)
    assert pending.judge({A: Look(3, 3, False)}, 6.0, marker_wait=5, error_wait=1) == ([], 1.0)
    assert pending.judge({A: Look(3, 3, False)}, 7.0, marker_wait=5, error_wait=1)[0] == [A]
