"""The intake's one walk over a body (`screen`) answers exactly as the limit check and the
card masking it replaced: the same records over a limit, the same body masked."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from common.redact import mask_pans_json
from contract import Limits, Oversize, check_value, screen

LIMITS = Limits(
    string_chars=64,
    number_digits=8,
    number_exponent=3,
    depth=4,
    list_items=3,
    lines_per_transaction=5,
)  # small, so that generated values reach every limit
CARD = "4111 1111 1111 1111"
NAMES = ["sku", "sha256", "key", "customer_id", "lines", "note", "file", "x" * 70, "e"]
TEXTS = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            CARD,
            "4111111111111111",
            "pay 4111-1111-1111-1111 ok",
            "4006381333931",  # a GTIN that passes Luhn
            "4111%201111%201111%201111",
            "1e999",
            "123456789012",
            "-1.5E+2",
            "a" * 65,
            "20261205145005",
        ]
    ),
)
LEAVES = st.one_of(
    TEXTS,
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.builds(Oversize, st.just("a number of 50 digits (limit 40)")),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=7),
        st.dictionaries(st.sampled_from(NAMES), inner, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=6))
def test_screen_agrees_with_the_limit_check_and_the_masking(body: dict[str, Any]) -> None:
    over, masked = screen(body, LIMITS)
    assert over == (check_value(body, LIMITS, "body") is not None)
    if not over:
        expected = mask_pans_json(body)
        assert masked == expected
        assert (masked is body) == (expected is body)


def test_a_card_number_in_a_body_within_the_limits_is_masked() -> None:
    body = {"note": CARD, "lines": [{"sku": "4006381333931", "memo": f"card {CARD}"}]}
    over, masked = screen(body, Limits())
    assert not over
    assert "4111 1111 1111 1111" not in repr(masked)
    assert masked["lines"][0]["sku"] == "4006381333931"  # a GTIN stays a barcode
    assert body["note"] == CARD  # the record as received is left alone


def test_lines_have_their_own_limit_only_where_a_field_is_named_lines() -> None:
    five = list(range(5))
    assert not screen({"lines": five}, LIMITS)[0]
    assert screen({"other": five}, LIMITS)[0]
    assert screen({"lines": [five]}, LIMITS)[0]  # a list inside the lines is any list
