"""Card numbers never survive into a record, whatever field they hide in."""

from __future__ import annotations

import re
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from contract import Customer, _pan, card_brand, luhn_valid, mask_pans, scrub_model
from tests.support.strategies import transactions


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


pans = st.tuples(
    st.sampled_from(["4", "51", "37", "6011", "35"]), st.integers(min_value=12, max_value=18)
).flatmap(
    lambda p: st.text(
        alphabet="0123456789", min_size=p[1] - len(p[0]), max_size=p[1] - len(p[0])
    ).map(lambda rest, prefix=p[0]: _luhn_complete(prefix + rest))
)
separators = st.sampled_from(["", " ", "-", ".", "_", "\u200b", " - ", "\u00a0", "/"])
# Text around a PAN never ends or starts with a digit or a separator (joined to it, a
# digit makes a longer run, which may hold another Luhn-valid window).
_EDGE = re.compile(r"\d|" + _pan._SEP)
surround = st.text(max_size=20).filter(
    lambda s: not _EDGE.fullmatch(s[-1:] or "x") and not _EDGE.fullmatch(s[:1] or "x")
)


def _formatted(pan: str, sep: str) -> str:
    return sep.join(pan[i : i + 4] for i in range(0, len(pan), 4))


def test_known_numbers() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert mask_pans("card 4111 1111 1111 1111 ok") == "card ************1111 ok"
    assert mask_pans("4111-1111-1111-1111") == "************1111"
    # Not Luhn-valid, too short, too long: left alone.
    assert mask_pans("order 4111111111111112") == "order 4111111111111112"
    assert mask_pans("ean 400638133393") == "ean 400638133393"
    assert mask_pans("x" + "4" * 25) == "x" + "4" * 25
    assert card_brand("4111111111111111") == "visa"
    assert card_brand("5500000000000004") == "mastercard"
    assert card_brand("378282246310005") == "amex"


@settings(max_examples=300, deadline=None)
@given(pans, separators, surround, surround)
def test_a_luhn_valid_number_never_survives_in_text(
    pan: str, sep: str, before: str, after: str
) -> None:
    text = before + _formatted(pan, sep) + after
    masked = mask_pans(text)
    assert pan not in re.sub(r"\D", "", masked)
    assert masked.endswith(pan[-4:] + after)


@settings(max_examples=100, deadline=None)
@given(transactions(), pans, st.sampled_from(["operator", "description", "method", "email"]))
def test_a_pan_in_any_record_field_is_masked(txn, pan: str, where: str) -> None:  # type: ignore[no-untyped-def]
    if where == "operator":
        dirty = txn.model_copy(update={"operator": f"op {pan}"})
    elif where == "email":
        dirty = txn.model_copy(update={"customer": Customer(email=f"{pan}@example.com")})
    elif where == "description" and txn.lines:
        line = txn.lines[0].model_copy(update={"description": f"gift {pan}"})
        dirty = txn.model_copy(update={"lines": [line, *txn.lines[1:]]})
    elif txn.tenders:
        tender = txn.tenders[0].model_copy(update={"method": f"CARD {pan} "})
        dirty = txn.model_copy(update={"tenders": [tender, *txn.tenders[1:]]})
    else:
        dirty = txn.model_copy(update={"attributes": {"note": pan}})
    clean = scrub_model(dirty)
    assert pan not in clean.model_dump_json()
    assert pan in dirty.model_dump_json()
    assert type(clean) is type(dirty)


def test_a_barcode_sku_is_not_taken_for_a_card_number() -> None:
    from contract import TransactionLine
    from contract._pan import gtin_valid

    ean = "4006381333924"  # a valid EAN-13 that also passes the Luhn check
    assert gtin_valid(ean)
    assert luhn_valid(ean)
    line = TransactionLine(number="1", sku=ean, description=f"card {ean}", amount=Decimal("1"))
    scrubbed = scrub_model(line)
    assert scrubbed.sku == ean
    assert ean not in scrubbed.description


def test_a_content_hash_is_not_taken_for_a_card_number() -> None:
    from contract import SourceRef

    digest = "ab" + "4111111111111111" + "c" * 46  # hex digits that hold a Luhn-valid run
    assert len(digest) == 64
    source = SourceRef(file=f"export {'4111111111111111'}.xml", sha256=digest)
    scrubbed = scrub_model(source)
    assert scrubbed.sha256 == digest
    assert "4111111111111111" not in scrubbed.file


def test_a_file_name_time_stamp_is_not_a_card_number() -> None:
    # 20261124124136 passes Luhn; as a time in a file name it must survive logs and records.
    assert luhn_valid("20261124124136")
    name = "POSLog_0101_20261124124136_00041.xml"
    assert mask_pans(name) == name
    # A real 14-digit card (Diners) and a Luhn-valid run that is no valid time stay masked.
    assert mask_pans("card 36227206271667") == "card **********1667"
    assert luhn_valid("20261399124134")  # month 13
    assert mask_pans("20261399124134") == "**********4134"


_PIECES = [*"0123456789 -:/a", "\u0664", "\u06f7", "\u0966", "  ", "--", "4111", "2024-05-01"]


@settings(max_examples=2000)
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
def test_the_quick_prefilter_never_skips_what_the_pattern_finds(text: str) -> None:
    # Records are checked with a simpler pattern before the candidate pattern; it must
    # never say no where the candidate pattern (Unicode digits included) says yes.
    assert _pan._long(text) == (_pan._CANDIDATE.search(text) is not None)


def test_a_number_in_unicode_digits_is_still_found_in_a_record() -> None:
    arabic = "".join(chr(0x0660 + int(d)) for d in "4111111111111111")
    customer = Customer(loyalty_id=arabic)
    assert _pan._long(arabic)
    assert scrub_model(customer).loyalty_id == "************1111"


def test_identifiers_are_masked_only_when_they_hold_an_issued_card_number() -> None:
    from contract import TransactionLine
    from contract._pan import issued_card

    item = "4098765432109"  # a 13-digit item id: passes Luhn, not a GTIN, no card today
    assert luhn_valid(item)
    assert not issued_card(item)
    line = TransactionLine(number="1", sku=item, description=f"gift {item}", amount=Decimal("1"))
    scrubbed, fields = _pan.scrub_model_fields(line)
    assert scrubbed.sku == item
    assert item not in scrubbed.description  # free text keeps the strict rule
    assert fields == ["description"]
    # A card number keyed into an identifier field is still a card number.
    card = "4111111111111111"
    keyed = Customer(loyalty_id=card, pos_customer_id=item)
    clean, fields = _pan.scrub_model_fields(keyed)
    assert clean.loyalty_id == "************1111"
    assert clean.pos_customer_id == item
    assert fields == ["loyalty_id"]


def test_the_relay_spares_identifiers_the_same_way() -> None:
    from common.redact import mask_pans_json

    body = {
        "transaction_id": "4098765432109",
        "lines": [{"sku": "4098765432109", "description": "4098765432109"}],
        "customer": {"loyalty_id": "5500 0000 0000 0004"},
    }
    masked = mask_pans_json(body)
    assert masked["transaction_id"] == "4098765432109"
    assert masked["lines"][0]["sku"] == "4098765432109"
    assert masked["lines"][0]["description"] == "*********2109"
    assert masked["customer"]["loyalty_id"] == "************0004"


def test_a_file_name_whose_digits_pass_luhn_across_an_underscore_is_kept() -> None:
    from common.redact import mask_pans_json
    from contract import SourceRef

    name = "POSLog_0101_20261205145005_00036.xml"  # 19 digits across "_" that pass Luhn
    assert luhn_valid("2026120514500500036")
    assert scrub_model(SourceRef(file=name)).file == name
    assert mask_pans_json({"source": {"file": name}})["source"]["file"] == name
    card = "receipt_4111111111111111.xml"  # an issued card number in a name is still masked
    assert "4111111111111111" not in (scrub_model(SourceRef(file=card)).file or "")
