"""The downlink at the store without a broker: a batch is committed before its answer,
idempotent by seq, `through` only past an unbroken run; a batch for another store is
refused; the writer loop writes in seq order, keeps what fails pending with backoff,
holds a cancellation behind its order, and raises an alert in the summary in time."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig, DownlinkSettings
from agent.downlink import Downlink, DownlinkStore
from agent.writers import DownItem, WriteError
from contract import decode_down_ack, encode_down
from tests.agent.downlink.orders import STORE, cancel, message, order, payload


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FlakyWriter:
    """Writes into a list; fails for the order numbers in `failing`."""

    name = "test"

    def __init__(self) -> None:
        self.written: list[tuple[int, str, str | None]] = []
        self.failing: set[str] = set()

    async def write(self, item: DownItem) -> str:
        if item.body.order_number in self.failing:
            raise WriteError("the POS import folder is offline")
        if item.body.order_number == "BUG":
            raise RuntimeError("a bug in the writer")
        self.written.append((item.seq, item.body.kind, item.prior))
        return f"written-{item.seq}"


@pytest.fixture
async def downlink(tmp_path: Path) -> Downlink:
    config = AgentConfig(
        store=STORE,
        data_dir=tmp_path,
        downlink=DownlinkSettings(
            enabled=True, folder=tmp_path / "in", alert_after_seconds=600, retry_min_seconds=2
        ),
    )
    store = await DownlinkStore.open(config.downlink_path)
    return Downlink(config, store, FlakyWriter(), clock=Clock())


def _writer(downlink: Downlink) -> FlakyWriter:
    assert isinstance(downlink.writer, FlakyWriter)
    return downlink.writer


async def test_commit_then_answer_idempotent_by_seq(downlink: Downlink) -> None:
    ack = await downlink.handle(payload(message(1, order("A")), message(2, order("B"))))
    assert ack is not None
    assert (ack.committed, ack.through, ack.store) == ([1, 2], 2, STORE)
    decode_down_ack(encode_down(ack))  # what goes on the wire is a valid answer
    again = await downlink.handle(payload(message(2, order("B")), message(1, order("A"))))
    assert again is not None
    assert sorted(again.committed) == [1, 2]
    summary = await downlink.summary()
    assert (summary.received, summary.waiting, summary.through) == (2, 2, 2)


async def test_through_stops_at_a_gap_and_moves_once_it_closes(downlink: Downlink) -> None:
    ack = await downlink.handle(payload(message(1, order("A")), message(3, order("C"))))
    assert ack is not None
    assert (ack.committed, ack.through) == ([1, 3], 1)
    ack = await downlink.handle(payload(message(2, order("B"))))
    assert ack is not None
    assert (ack.committed, ack.through) == ([2], 3)


async def test_a_batch_for_another_store_is_refused_whole(downlink: Downlink) -> None:
    other = payload(message(1, order("A", store="0099")), store="0099")
    assert await downlink.handle(other) is None
    assert await downlink.handle(b"not gzip at all") is None
    assert (await downlink.summary()).received == 0
    assert downlink.refused_batches == 2


async def test_written_in_seq_order_each_once(downlink: Downlink) -> None:
    await downlink.handle(payload(message(2, order("B")), message(1, order("A"))))
    await downlink.write_due()
    await downlink.write_due()
    assert _writer(downlink).written == [(1, "order", None), (2, "order", None)]
    summary = await downlink.summary()
    assert (summary.written, summary.waiting) == (2, 0)


async def test_a_failing_order_stays_pending_is_retried_and_alerts(downlink: Downlink) -> None:
    writer, clock = _writer(downlink), downlink.clock
    assert isinstance(clock, Clock)
    writer.failing.add("A")
    await downlink.handle(
        payload(message(1, order("A")), message(2, cancel("A")), message(3, order("B")))
    )
    await downlink.write_due()
    # B went on; A failed and its cancellation waits behind it.
    assert writer.written == [(3, "order", None)]
    [row_a, row_cancel] = await downlink.store.unwritten()
    assert (row_a.seq, row_a.attempts, row_a.last_error) == (
        1,
        1,
        "the POS import folder is offline",
    )
    assert row_a.next_attempt > clock.now
    assert row_cancel.attempts == 0
    # Not due yet: nothing is tried.
    await downlink.write_due()
    assert (await downlink.store.unwritten())[0].attempts == 1
    # Past the backoff: tried again, fails again, the delay grows.
    clock.now = row_a.next_attempt + 0.1
    await downlink.write_due()
    [row_a2, _] = await downlink.store.unwritten()
    assert row_a2.attempts == 2
    assert row_a2.next_attempt - clock.now > row_a.next_attempt - 1_000_000.0
    assert (await downlink.summary()).alerts == []
    # Past alert_after: the summary (status) names the order.
    clock.now += 601
    summary = await downlink.summary()
    assert [(a["seq"], a["order_number"], a["attempts"]) for a in summary.alerts] == [
        (1, "A", 2),
        (2, "A", 0),
    ]
    assert summary.alerts[0]["last_error"] == "the POS import folder is offline"
    # The POS is back: the order, then its cancellation (told where the order went).
    writer.failing.clear()
    clock.now += 400
    await downlink.write_due()
    assert writer.written == [
        (3, "order", None),
        (1, "order", None),
        (2, "order_cancel", "written-1"),
    ]
    summary = await downlink.summary()
    assert (summary.waiting, summary.written, summary.alerts) == (0, 3, [])


async def test_an_unreadable_message_is_kept_and_shown_never_dropped(downlink: Downlink) -> None:
    bad = message(1, order("A")).model_copy(update={"body": {"kind": "order", "nonsense": 1}})
    ack = await downlink.handle(payload(bad, message(2, order("B"))))
    assert ack is not None
    assert ack.committed == [1, 2]  # held: central need not send it again
    await downlink.write_due()
    assert _writer(downlink).written == [(2, "order", None)]
    [row] = await downlink.store.unwritten()
    assert row.seq == 1
    assert row.last_error is not None
    assert "cannot be read" in row.last_error


async def test_purge_drops_bodies_but_not_that_they_were_held(downlink: Downlink) -> None:
    await downlink.handle(payload(message(1, order("A"))))
    await downlink.write_due()
    clock = downlink.clock
    assert isinstance(clock, Clock)
    clock.now += 31 * 86400
    assert await downlink.purge() == 1
    ack = await downlink.handle(payload(message(1, order("A"))))
    assert ack is not None
    assert (ack.committed, ack.through) == ([1], 1)
    await downlink.write_due()
    assert _writer(downlink).written == [(1, "order", None)]  # not written again


async def test_a_seq_central_reuses_for_another_message_is_not_acknowledged(
    downlink: Downlink,
) -> None:
    """Central's queue rebuilt, numbering from 1 again: seq 1 now names another order. The
    store must not settle it as held (the new order would never be written)."""
    await downlink.handle(payload(message(1, order("A"))))
    ack = await downlink.handle(payload(message(1, order("Z")), message(2, order("B"))))
    assert ack is not None
    assert (ack.committed, ack.through) == ([2], 2)
    assert downlink.clashes == 1


async def test_a_writer_that_crashes_keeps_the_order_pending(downlink: Downlink) -> None:
    await downlink.handle(payload(message(1, order("BUG")), message(2, order("B"))))
    await downlink.write_due()
    assert _writer(downlink).written == [(2, "order", None)]
    [row] = await downlink.store.unwritten()
    assert row.last_error == "the writer failed: RuntimeError: a bug in the writer"
