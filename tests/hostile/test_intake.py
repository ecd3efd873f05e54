"""What one store's broker credentials can send the relay: every message here gets a
clear answer (refused, or records rejected on the ack path) in bounded time, and the
relay keeps acknowledging the others meanwhile."""

from __future__ import annotations

import gzip
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from central.config import IntakeSettings
from central.intake import examine, gather_refusals
from contract import EnvelopeError, Limits, encode_batch
from tests.support.mosquitto import Mosquitto
from tests.support.records import batch, sale_body, wait_for, wire
from tests.support.relay import TestAgent, central_config, running_relay

LIMITS = Limits()


def _raw(records: list[dict[str, Any]], store: str = "0042") -> dict[str, Any]:
    sent = batch(store, [wire(i + 1, r) for i, r in enumerate(records)])
    return json.loads(sent.model_dump_json(by_alias=True))  # type: ignore[no-any-return]


def _payload(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_a_number_too_long_for_python_is_one_rejected_record() -> None:
    raw = _raw([sale_body("0042", "T1"), sale_body("0042", "T2")])
    text = _payload(raw).replace(b'"number": "1"', b'"number": ' + b"9" * 5000, 1)
    started = time.perf_counter()
    _, good, bad = examine(text, LIMITS)
    assert time.perf_counter() - started < 1
    assert [r.seq for r in good] == [2]
    (refused,) = bad
    assert refused.seq == 1
    assert "body.lines[0].number: a number of 5000 digits (limit 40)" in refused.reason
    assert refused.payload["body"] is None


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("1e-70000000", "exponent -70000000"),
        ("1e-999999999999", "exponent -99999999999…"),
        ("0." + "0" * 100 + "1", "102 digits"),
        ("a" * 70_000, "a string of 70000 characters"),
    ],
)
def test_a_value_over_a_limit_refuses_its_record_alone(value: str, said: str) -> None:
    body = sale_body("0042", "T1")
    body["lines"][0]["quantity"] = value
    _, good, bad = examine(_payload(_raw([body, sale_body("0042", "T2")])), LIMITS)
    assert [r.seq for r in good] == [2]
    (refused,) = bad
    assert said in refused.reason
    assert refused.reason.startswith("over a limit: body.lines[0].quantity")
    assert len(refused.reason) <= 300


def test_too_many_lines_and_too_deep_nesting_are_refused() -> None:
    wide = sale_body("0042", "T1")
    wide["lines"] = [dict(wide["lines"][0], number=str(i)) for i in range(6)]
    deep = sale_body("0042", "T2")
    nest: dict[str, Any] = {}
    deep["extra"] = nest
    for _ in range(40):
        nest["x"] = {}
        nest = nest["x"]
    limits = Limits(lines_per_transaction=5)
    _, good, bad = examine(_payload(_raw([wide, deep])), limits)
    assert good == []
    assert "body.lines: 6 items (limit 5)" in bad[0].reason
    assert "nested deeper than 32 levels" in bad[1].reason


def test_json_nested_past_the_interpreter_is_a_refusal_not_a_crash() -> None:
    with pytest.raises(EnvelopeError, match="nests too deep"):
        examine(b"[" * 200_000 + b"]" * 200_000, LIMITS)
    with pytest.raises(EnvelopeError, match="not a JSON number"):
        examine(b'{"schema": NaN}', LIMITS)


def test_messages_over_the_byte_limits_are_refused_before_parsing() -> None:
    limits = Limits(message_bytes=64 * 1024, inflated_bytes=256 * 1024)
    plain = b'{"records": [' + b" " * 300_000 + b"]}"
    with pytest.raises(EnvelopeError, match="message of 300015 bytes is over the limit"):
        examine(plain, limits)
    bomb = gzip.compress(b" " * (50 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    started = time.perf_counter()
    with pytest.raises(EnvelopeError, match="inflates past the limit of 262144 bytes"):
        examine(bomb, limits)
    assert time.perf_counter() - started < 1


def test_a_batch_over_the_record_count_is_rejected_whole_on_the_ack_path() -> None:
    raw = _raw([sale_body("0042", f"T{i}") for i in range(5)])
    _, good, bad = examine(_payload(raw), Limits(records_per_batch=4))
    assert good == []
    assert [b.seq for b in bad] == [1, 2, 3, 4, 5]
    assert {b.reason for b in bad} == {"batch holds 5 records (limit 4)"}


def test_a_million_refusals_are_a_hundred_and_one_exception_rows() -> None:
    from central.inbox import InvalidRecord

    bad = [InvalidRecord(s, f"k{s}", "invalid record: total", {}) for s in range(1, 1_000_001)]
    started = time.perf_counter()
    kept, reasons = gather_refusals("b1", bad, 100)
    assert time.perf_counter() - started < 5
    assert len(kept) == 101
    assert reasons == {"invalid record: total": 1_000_000}
    aggregate = kept[-1]
    assert (
        aggregate.reason == "999900 more records of batch b1 refused: 999900× invalid record: total"
    )
    assert aggregate.payload["seq_ranges"] == [(101, 1_000_000)]


async def test_refused_records_are_acked_aggregated_and_leave_no_gap(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path)
    config.intake = IntakeSettings(exceptions_per_batch=5)
    bodies = [sale_body("0042", f"T{i}", total="1.001") for i in range(300)]
    bodies.append(sale_body("0042", "T-good"))
    sent = batch("0042", [wire(i + 1, b) for i, b in enumerate(bodies)])
    caplog.set_level(logging.INFO, "tillbridge")
    async with running_relay(config) as (_, inbox), TestAgent(mosquitto.port) as agent:
        await agent.publish("0042", encode_batch(sent))

        async def acked() -> list[Any]:
            return agent.acks_for(sent.batch_id)

        (ack,) = await wait_for(acked, timeout=20)
        assert ack.committed == [301]
        assert sorted(r.seq for r in ack.rejected) == list(range(1, 301))
        assert len(await inbox.exceptions(1000)) == 6
        stats = await inbox.stats()
        assert (stats["records"], stats["exceptions"], stats["gaps"]) == (1, 6, 0)
    lines = [
        r
        for r in caplog.records
        if r.getMessage() == "Records rejected; kept in the exception queue."
    ]
    assert len(lines) == 1


async def test_hostile_messages_do_not_stop_other_stores_being_acked(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path)
    huge = sale_body("0066", "T1")
    huge["lines"][0]["description"] = "a" * (50 * 1024 * 1024)
    hostile = [
        gzip.compress(_payload(_raw([huge], "0066"))),  # 50 MB of letters, small gzipped
        b'{"records": [' + b"1," * (6 * 1024 * 1024) + b"1]}",  # a plain 12 MB message
        _payload(_raw([sale_body("0066", "T2")], "0066")).replace(
            b'"seq": 1', b'"seq": 9223372036854775807'
        ),
    ]
    honest = batch("0042", [wire(1, sale_body("0042", "T1"))])
    async with running_relay(config) as (intake, inbox), TestAgent(mosquitto.port) as agent:
        for payload in hostile:
            await agent.publish("0066", payload)
        started = time.perf_counter()
        await agent.publish("0042", encode_batch(honest))

        async def acked() -> list[Any]:
            return agent.acks_for(honest.batch_id)

        await wait_for(acked, timeout=20)
        assert time.perf_counter() - started < 10

        async def settled() -> bool:
            return intake.counters["batches"] + intake.counters["refused"] >= 4

        await wait_for(settled, timeout=20)
        stats = await inbox.stats()
        assert stats["refused"] == 2  # the 50 MB record and the 12 MB message
        (gap,) = await inbox.gaps("0066")
        assert (gap.from_seq, gap.to_seq) == (1, 9223372036854775806)


def test_card_numbers_are_masked_at_intake_whatever_the_agent_sent() -> None:
    good = sale_body("0042", "T1")
    good["lines"][0]["description"] = "card 4111.1111.1111.1111"
    good["lines"][0]["sku"] = "4006381333931"  # an EAN-13 that passes Luhn: a barcode
    bad = sale_body("0042", "T2", total="1.001")
    bad["lines"][0]["description"] = "card 4111_1111_1111_1111"
    _, kept, refused = examine(_payload(_raw([good, bad])), LIMITS)
    assert kept[0].body["lines"][0]["description"] == "card ************1111"
    assert kept[0].body["lines"][0]["sku"] == "4006381333931"
    assert refused[0].payload["body"]["lines"][0]["description"] == "card ************1111"


async def test_a_topic_naming_no_store_and_a_huge_status_are_dropped(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path)
    honest = batch("0042", [wire(1, sale_body("0042", "T1"))])
    async with running_relay(config) as (intake, inbox), TestAgent(mosquitto.port) as agent:
        await agent.publish("x" * 5000, encode_batch(honest))
        await agent.publish(
            "0066",
            b'{"store": "0066", "state": "online", "x": "' + b"a" * 200_000 + b'"}',
            "status",
        )
        await agent.publish("0042", encode_batch(honest))

        async def acked() -> list[Any]:
            return agent.acks_for(honest.batch_id)

        await wait_for(acked, timeout=20)

        async def refused() -> bool:
            return intake.counters["status_refused"] == 1

        await wait_for(refused, timeout=20)
        assert intake.counters["bad_topic"] == 1
        assert [s.store for s in await inbox.stores()] == ["0042"]
        assert (await inbox.stats())["refused"] == 0


def test_a_record_of_the_wrong_shape_is_rejected_alone_when_it_names_its_seq() -> None:
    raw = _raw([sale_body("0042", f"T{i}") for i in range(4)])
    raw["records"][0]["key"] = "k" * 600
    raw["records"][1]["body"] = ["not", "an", "object"]
    raw["records"][2]["seq"] = 9_223_372_036_854_775_808  # past 64 bits
    with pytest.raises(EnvelopeError, match=r"records\.2\.seq"):
        examine(_payload(raw), LIMITS)
    raw["records"][2]["seq"] = 3
    _, good, bad = examine(_payload(raw), LIMITS)
    assert [r.seq for r in good] == [3, 4]
    assert [(b.seq, len(b.key)) for b in bad] == [(1, 512), (2, len(raw["records"][1]["key"]))]
    assert bad[0].reason.startswith("invalid record: key: String should have at most 512")
    assert bad[1].reason.startswith("invalid record: body: ")
    assert all(b.payload["body"] is None for b in bad)


async def test_many_rejections_are_answered_in_acks_the_broker_can_carry(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path)
    bodies = [sale_body("0042", f"T{i}", total="1.001") for i in range(2500)]
    bodies.append(sale_body("0042", "T-good"))
    sent = batch("0042", [wire(i + 1, b) for i, b in enumerate(bodies)])
    async with running_relay(config) as _, TestAgent(mosquitto.port) as agent:
        await agent.publish("0042", encode_batch(sent))

        async def acked() -> list[Any] | None:
            acks = agent.acks_for(sent.batch_id)
            return acks if len(acks) == 3 else None

        acks = await wait_for(acked, timeout=60)
        assert [len(a.rejected) for a in acks] == [1000, 1000, 500]
        assert [a.committed for a in acks] == [[2501], [], []]
        assert set().union(*(a.settled() for a in acks)) == set(range(1, 2502))
        assert max(len(a.model_dump_json(by_alias=True)) for a in acks) < 512 * 1024
