"""Every masking is counted by field name, never by value, and said in the log."""

from __future__ import annotations

import io
import logging

import pytest

from agent.parsers import MASKED, ParseContext, parse_stream


def test_a_masked_card_number_is_counted_and_logged_by_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = (
        b"sku,location,qty,counted_at\n"
        b"4098765432109,FLOOR,3,2024-03-15T21:30:00\n"
        b"A2,BACK 4111 1111 1111 1111,3,2024-03-15T21:30:00\n"
    )
    before = MASKED.copy()
    caplog.set_level(logging.INFO, "tillbridge.agent.parsers")
    items = list(
        parse_stream(io.BytesIO(data), "inventory", context=ParseContext("c.csv", store="0042"))
    )
    assert [getattr(i, "sku", None) for i in items] == ["4098765432109", "A2"]  # spared
    # A SKU in a key is spared too: masked, two SKUs ending alike would share one key.
    assert items[0].key == "inventory:0042:FLOOR:4098765432109:at-20240315T213000Z"
    # Not in the location, nor in the key, where its spaces were escaped (%20).
    assert "4111" not in items[1].model_dump_json()
    assert (
        items[1].key
        == "inventory:0042:BACK%20%2A%2A%2A%2A%2A%2A%2A%2A%2A%2A%2A%2A1111:A2:at-20240315T213000Z"
    )
    assert MASKED - before == {"key": 1, "location": 1}
    [line] = [r for r in caplog.records if r.getMessage() == "Card number masked."]
    assert sorted(line.fields) == ["key", "location"]  # type: ignore[attr-defined]
    assert "4111 1111" not in caplog.text
