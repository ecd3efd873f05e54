"""The wire as bytes: one encoder for every sender, pinned to a golden batch."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

from contract import (
    AgentInfo,
    Batch,
    Release,
    decode_batch,
    encode_batch,
    encode_records,
    record_json,
)

SENT_AT = datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)
BODY = (
    '{"kind":"sale","key":"sale:0042:1:2024-05-01:T1","store":"0042","total":"12.30",'
    '"note":"caf\\u00e9 \\"x\\""}'
)

# What the agent sends for these two records, byte for byte, as it did before the wire
# had one module: a change here is a change of the wire contract, not a refactoring.
GOLDEN = (
    b'{"schema": 1, "store": "0042", "agent": {"id": "till-pc", "version": "0.1.0"}, '
    b'"batch_id": "abc-b1", "sent_at": "2024-05-01T08:00:00.123456+00:00","records":['
    b'{"kind":"sale","seq":1,"key":"sale:0042:1:2024-05-01:T1","correlation_id":"c0ffee",'
    b'"occurred_at":"2024-05-01T10:00:00+02:00","source":{"file":"a.xml","position":"line 1"},'
    b'"body":{"kind":"sale","key":"sale:0042:1:2024-05-01:T1","store":"0042","total":"12.30",'
    b'"note":"caf\\u00e9 \\"x\\""}},'
    b'{"kind":"end_of_day","seq":2,"key":"k\\u00e9y\\"2","correlation_id":"c0ffee",'
    b'"occurred_at":"2024-05-01T23:59:59+02:00","source":{"file":"b.xml","position":"line 2"},'
    b'"body":{"kind":"end_of_day"}}]}'
)


def _golden_records() -> list[bytes]:
    return [
        record_json(
            1,
            "sale:0042:1:2024-05-01:T1",
            "sale",
            "c0ffee",
            "2024-05-01T10:00:00+02:00",
            '{"file":"a.xml","position":"line 1"}',
            BODY,
        ).encode(),
        record_json(
            2,
            'k\u00e9y"2',
            "end_of_day",
            "c0ffee",
            "2024-05-01T23:59:59+02:00",
            '{"file":"b.xml","position":"line 2"}',
            '{"kind":"end_of_day"}',
        ).encode(),
    ]


def _encode(level: int = 1) -> bytes:
    return encode_records(
        _golden_records(),
        store="0042",
        agent_id="till-pc",
        agent_version="0.1.0",
        batch_id="abc-b1",
        sent_at=SENT_AT,
        level=level,
    )


def test_a_batch_is_encoded_byte_for_byte_as_the_wire_contract_says() -> None:
    payload = _encode()
    assert payload[:4] == bytes.fromhex("1f8b0800")  # gzip, deflate, no name
    assert payload[4:8] == b"\x00\x00\x00\x00"  # mtime 0: the same batch, the same bytes
    assert gzip.decompress(payload) == GOLDEN
    assert _encode() == payload


def test_the_golden_batch_decodes_into_its_records() -> None:
    batch = decode_batch(_encode())
    assert (batch.store, batch.agent.id, batch.batch_id) == ("0042", "till-pc", "abc-b1")
    assert batch.sent_at == SENT_AT
    assert [r.seq for r in batch.records] == [1, 2]
    assert batch.records[0].body["note"] == 'café "x"'
    assert batch.records[1].key == 'k\u00e9y"2'
    assert batch.released == []


def test_a_batch_model_is_encoded_by_the_same_encoder() -> None:
    """`encode_batch` (a Batch in hand: releases, tests) frames a batch as the uplink does."""
    batch = decode_batch(_encode())
    raw = gzip.decompress(encode_batch(batch))
    head = GOLDEN[: GOLDEN.index(b'"records":[') + len(b'"records":[')]
    assert raw.startswith(head)
    assert raw.endswith(b"]}")
    assert decode_batch(encode_batch(batch)) == batch


def test_released_seqs_follow_the_records() -> None:
    release = Release(from_seq=3, to_seq=9, cause="purged", reason="acknowledged and purged")
    batch = Batch(
        store="0042",
        agent=AgentInfo(id="till-pc", version="0.1.0"),
        batch_id="abc-b2",
        sent_at=SENT_AT,
        records=[],
        released=[release],
    )
    raw = gzip.decompress(encode_batch(batch))
    assert raw.endswith(
        b'"records":[],"released":[{"from_seq":3,"to_seq":9,"cause":"purged",'
        b'"reason":"acknowledged and purged"}]}'
    )
    assert json.loads(raw)["released"][0]["from_seq"] == 3
    assert decode_batch(encode_batch(batch)) == batch
