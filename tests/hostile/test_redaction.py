"""Redaction and card masking on hostile text: no pattern backtracks (a megabyte of any
shape is scrubbed in about a second; the bound of 15 s leaves room for a busy machine,
where a backtracking pattern takes hours on the same text), and a card number is masked
whatever is written between its digits, by the compiled module and the plain source."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType

import pytest

from common.redact import redact_text, redact_value
from contract import Customer, mask_pans, scrub_model

ROOT = Path(__file__).parents[2]
LINEAR_SECONDS = 15
MB = 1_000_000

# Each shape made one of the old patterns quadratic, or is a near miss for a new one.
SHAPES = {
    "letters": "a" * MB,
    "key names without a value": "x_password " * (MB // 11),
    "a quote that never closes": 'password="' + "a" * MB,
    "an email's local part, no @": "a." * (MB // 2),
    "at signs": "a@" * (MB // 2),
    "a domain without an end": "x@" + "a." * (MB // 2),
    "a scheme without credentials": "a" * MB + "://",
    "a phone that never ends": "+12 3" + " " * MB + "x",
    "digits and dots": "1." * (MB // 2),
    "digits": "1" * MB,
    "zero-width spaces and digits": "1\u200b" * (MB // 2),
    "keys and equals": "password=" * (MB // 9),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_redaction_is_linear_on_hostile_text(shape: str) -> None:
    text = SHAPES[shape]
    redact_text(text[:1000])  # warm up
    started = time.perf_counter()
    redact_text(text)
    assert time.perf_counter() - started < LINEAR_SECONDS, shape


def test_redaction_still_finds_what_it_must() -> None:
    said = redact_text(
        'password="hunter2" x-api-key: abc123 user_token=tok '
        "mail jane.doe+pos@example.co.uk call +49 30 1234567 "
        "amqp://relay:s3cret@broker:5672 Authorization: Bearer abcdefghijkl"
    )
    for secret in ("hunter2", "abc123", "tok ", "jane.doe", "1234567", "s3cret", "abcdefghijkl"):
        assert secret not in said, secret
    assert "foo=password=x" not in redact_text("foo=password=xyz")
    assert redact_text("order=1234 store=0042") == "order=1234 store=0042"


PAN = "4111111111111111"
WRITTEN = [
    "4111.1111.1111.1111",
    "4111_1111_1111_1111",
    "4111\u200b1111\u200b1111\u200b1111",
    "4\u200b1\u200b1\u200b1\u200b1111\u200d1111\ufeff1111",
    "4111\u00a01111\u00a01111\u00a01111",
    "4111 - 1111 - 1111 - 1111",
    "4111/1111/1111/1111",
    "4111\u20131111\u20131111\u20131111",
    "4111\u00ad1111\u00ad1111\u00ad1111",
    "\uff14\uff11\uff11\uff11 1111 1111 1111",
]


def _plain_pan() -> ModuleType:
    """The card-number module as plain Python, beside whatever `contract` loaded."""
    spec = importlib.util.spec_from_file_location("plain_pan", ROOT / "contract/_pan.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("written", WRITTEN)
def test_a_card_number_with_any_separator_is_masked(written: str) -> None:
    for masked in (
        mask_pans(f"card {written} ok"),
        redact_text(f"card {written} ok"),
        redact_value({"note": f"card {written} ok"})["note"],
        scrub_model(Customer(loyalty_id=written)).loyalty_id or "",
    ):
        digits = "".join(c for c in masked if c.isdigit())
        assert "411111" not in digits, masked
        assert masked.count("1111") == 1
    assert _plain_pan().mask_pans(f"card {written} ok") == mask_pans(f"card {written} ok")


def test_near_misses_stay_as_they_are() -> None:
    for text in (
        "1234567.8901234567",  # one decimal point: an amount
        "POSLog_0101_20261124124136_00041.xml",  # a time stamp between fields
        "x" + "4" * 25,  # a long plain digit string is never cut
        "10.0.0.1",
    ):
        assert mask_pans(text) == text


def test_compiled_and_plain_masking_agree_on_hostile_text() -> None:
    plain = _plain_pan()
    texts = [
        *WRITTEN,
        "1." * 5000,
        "4111 1111 1111 1111 5500 0000 0000 0004",
        ":8\r5100 0000 0000 3",
        "0.4111.1111.1111.1111.9",
        "\u0664\u0661\u0661\u0661" + "1" * 12,
    ]
    for text in texts:
        assert plain.mask_pans(text) == mask_pans(text), text


@pytest.mark.parametrize(
    "text",
    [
        "{" + '"firstName": "' * (MB // 14),
        "[" + '"' * MB,
        "{" + '"a\\' * (MB // 3),
        "[" * MB,
    ],
    ids=["keys without values", "quotes", "escapes", "nesting"],
)
def test_json_text_redaction_is_linear_on_hostile_text(text: str) -> None:
    started = time.perf_counter()
    redact_value({"request": text})
    assert time.perf_counter() - started < LINEAR_SECONDS
