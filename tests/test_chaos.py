"""The short fault-injection run inside `make test` (the long one is `make chaos`):
real agents, relay, Mosquitto and a recording target as processes, every kind of fault,
and at the end each store's day reconciled against its own end-of-day totals."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.chaos import run_chaos

KINDS = ("SIGKILL agent", "SIGKILL relay", "broker stopped", "without its persistence")


@pytest.mark.timeout(400)
def test_faults_lose_and_double_nothing(tmp_path: Path) -> None:
    result = run_chaos(
        tmp_path,
        stores=3,
        transactions=360,
        seed=11,
        faults=8,
        settle_timeout=240,
        say=print,
    )
    print(result.summary, *result.faults, sep="\n")
    assert result.sent > 300
    assert (result.received, result.posted) == (result.sent, result.sent)
    assert (result.lost, result.duplicated) == (0, 0)
    # Online orders queued for the stores during the same faults: each written once.
    assert result.orders_queued >= 3 * 2 * 5
    assert result.orders_written == result.orders_queued
    assert (result.orders_lost, result.orders_duplicated) == (0, 0)
    assert result.differences == []
    # Each store's end-of-day (after the faults, the latest revision) matches the relay's
    # inbox and what the target confirmed: -1 would mean the day never closed.
    assert result.recon_differences == dict.fromkeys(("0101", "0102", "0103"), 0)
    for kind in KINDS:
        assert any(kind in fault for fault in result.faults), kind
    assert any("cut off" in fault for fault in result.faults)
    assert any("(moved aside and rebuilt)" in fault for fault in result.faults)
    assert any("held at a full buffer" in fault for fault in result.faults)
