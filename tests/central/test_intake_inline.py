"""Which batches the intake reads on its event loop: small ones only, measured without
inflating more than the inline limit (a compressed bomb goes to a thread)."""

from __future__ import annotations

import gzip

import pytest

from central.intake import INLINE_BYTES, examine, inline, small
from contract import EnvelopeError, Limits
from tests.support.records import sales_batch


def test_a_usual_batch_is_read_inline() -> None:
    payload = sales_batch("0042", range(1, 21))
    assert len(gzip.decompress(payload)) < INLINE_BYTES
    assert small(payload)


def test_a_batch_that_inflates_past_the_limit_is_not() -> None:
    bomb = gzip.compress(b" " * (8 * 1024 * 1024))
    assert len(bomb) < INLINE_BYTES  # small as it arrives
    assert not small(bomb)
    assert not small(gzip.compress(b" " * (INLINE_BYTES + 1)))
    assert small(gzip.compress(b" " * INLINE_BYTES))


def test_a_second_gzip_member_is_not_taken_on_trust() -> None:
    first = gzip.compress(b"{}")
    assert small(first)
    assert not small(first + gzip.compress(b" " * (8 * 1024 * 1024)))


def test_plain_json_counts_its_length_and_garbage_is_refused_at_once() -> None:
    assert small(b"{" + b" " * 100 + b"}")
    assert not small(b" " * (INLINE_BYTES + 1))
    assert small(b"\x1f\x8bnot gzip at all")


def test_a_small_batch_is_inflated_once_and_read_alike() -> None:
    payload = sales_batch("0042", range(1, 21))
    data = inline(payload, Limits())
    assert data == gzip.decompress(payload)  # handed on inflated: not inflated again
    read, good, bad = examine(data, Limits())
    again, good_again, _ = examine(payload, Limits())
    assert read == again
    assert [r.key for r in good] == [r.key for r in good_again]
    assert len(good) == 20
    assert not bad


def test_what_the_limits_refuse_is_read_as_it_came() -> None:
    inflated = b'{"a": "' + b"x" * 5000 + b'"}'
    payload = gzip.compress(inflated)
    assert inline(payload, Limits(message_bytes=4096)) == payload  # refused as sent
    assert inline(payload, Limits()) == inflated
    twice = gzip.compress(gzip.compress(b"{}"))
    assert inline(twice, Limits()) == twice  # gzip inside gzip is never inflated twice
    with pytest.raises(EnvelopeError):
        examine(twice, Limits())
