"""The wire envelope: gzip JSON batches, acks, topics."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import (
    Ack,
    AgentInfo,
    Batch,
    EnvelopeError,
    Limits,
    Rejection,
    Transaction,
    WireRecord,
    decode_batch,
    encode_batch,
    parse_topic,
    topic,
)
from tests.support.strategies import transactions


def _batch(txns: list[Transaction]) -> Batch:
    records = []
    for seq, txn in enumerate(txns, start=1):
        records.append(
            WireRecord(
                kind=txn.kind,
                seq=seq,
                key=txn.key,
                correlation_id=f"c{seq}",
                occurred_at=txn.occurred_at,
                source=txn.source,
                body=txn.model_dump(mode="json"),
            )
        )
    return Batch(
        store="0042",
        agent=AgentInfo(id="pc-1", version="0.1.0"),
        batch_id="b-1",
        sent_at=datetime(2026, 11, 24, 6, 0, tzinfo=UTC),
        records=records,
    )


@settings(max_examples=50, deadline=None)
@given(st.lists(transactions(), min_size=1, max_size=4))
def test_batch_round_trips_gzip_and_plain_json(txns: list[Transaction]) -> None:
    batch = _batch(txns)
    payload = encode_batch(batch)
    assert payload[:2] == b"\x1f\x8b"
    assert decode_batch(payload) == batch
    plain = json.dumps(json.loads(gzip.decompress(payload))).encode()
    assert decode_batch(plain) == batch
    assert json.loads(gzip.decompress(payload))["schema"] == 1
    # Each body validates back into the canonical record it came from.
    for wire in batch.records:
        assert wire.record().key == wire.key


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x1f\x8b\x08\x00garbage", "not valid gzip"),
        (b"{not json", "not valid JSON"),
        (b'{"schema": 1}', "envelope is invalid"),
        (gzip.compress(b"[]"), "envelope is invalid"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(payload: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        decode_batch(payload)


def test_a_decompression_bomb_is_refused() -> None:
    with pytest.raises(EnvelopeError, match="inflates past the limit of 4096 bytes"):
        decode_batch(gzip.compress(b" " * 5000), Limits(inflated_bytes=4096))


def test_ack_settles_committed_duplicates_and_rejected() -> None:
    ack = Ack(
        store="0042",
        batch_id="b",
        committed=[1, 2],
        duplicates=[3],
        rejected=[Rejection(seq=4, key="k", reason="bad")],
    )
    assert ack.settled() == {1, 2, 3, 4}
    assert Ack.model_validate_json(ack.model_dump_json(by_alias=True)) == ack


def test_topics() -> None:
    assert topic("tillbridge/v1", "0042", "records") == "tillbridge/v1/0042/records"
    assert parse_topic("tillbridge/v1", "tillbridge/v1/0042/ack") == ("0042", "ack")
    with pytest.raises(EnvelopeError):
        parse_topic("tillbridge/v1", "other/0042/ack")
    with pytest.raises(EnvelopeError):
        parse_topic("tillbridge/v1", "tillbridge/v1/0042/records/extra")
