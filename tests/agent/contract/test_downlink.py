"""The downlink contract: orders and cancellations down, answers and fulfilment up."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from contract import (
    DownAck,
    DownBatch,
    DownMessage,
    EnvelopeError,
    Fulfillment,
    OnlineOrder,
    OrderCancel,
    decode_down,
    decode_down_ack,
    encode_down,
    order_key,
    record_adapter,
    topic,
)

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def order(**change: object) -> OnlineOrder:
    data: dict[str, object] = {
        "source": "commercetools",
        "target": "ct",
        "order_id": "a1b2",
        "order_number": "WEB-1001",
        "version": 3,
        "store": "0042",
        "fulfilment": "pickup",
        "created_at": NOW,
        "currency": "EUR",
        "taxed": "included",
        "lines": [
            {
                "line_id": "l1",
                "sku": "4711",
                "quantity": "0.65",
                "unit": "kg",
                "unit_price": "12.90",
                "amount": "8.39",
                "tax": "0.55",
                "tax_rate": "7",
            }
        ],
        "tax_total": "0.55",
        "total": "8.39",
        "payments": [{"method": "card", "amount": "8.39", "captured": False}],
    }
    data.update(change)
    return OnlineOrder.model_validate(data)


def test_a_batch_goes_down_and_comes_back_the_same() -> None:
    body = order()
    batch = DownBatch(
        store="0042",
        batch_id="b1",
        sent_at=NOW,
        messages=[
            DownMessage(
                seq=1,
                kind="order",
                key=order_key(body),
                issued_at=NOW,
                body=body.model_dump(mode="json"),
            )
        ],
    )
    back = decode_down(encode_down(batch))
    assert back == batch
    read = back.messages[0].read()
    assert isinstance(read, OnlineOrder)
    assert read.lines[0].quantity == Decimal("0.65")
    assert read.lines[0].amount == Decimal("8.39")


def test_the_key_names_kind_target_order_and_version() -> None:
    assert order_key(order()) == "order:ct:a1b2:3"
    cancel = OrderCancel(
        source="commercetools",
        target="ct",
        order_id="a1b2",
        order_number="WEB-1001",
        version=4,
        store="0042",
    )
    assert order_key(cancel) == "order_cancel:ct:a1b2:4"


def test_an_answer_round_trips_and_a_broken_one_is_refused() -> None:
    ack = DownAck(store="0042", batch_id="b1", committed=[1, 2], through=2)
    assert decode_down_ack(encode_down(ack)) == ack
    with pytest.raises(EnvelopeError, match="downlink answer is invalid"):
        decode_down_ack(gzip.compress(b'{"store": "0042"}'))
    with pytest.raises(EnvelopeError, match="downlink batch"):
        decode_down(b"not gzip and not json")


def test_an_order_without_lines_or_with_a_store_that_cannot_be_a_topic_is_refused() -> None:
    with pytest.raises(ValidationError):
        order(lines=[])
    with pytest.raises(ValidationError):
        order(store="00/42")
    with pytest.raises(ValidationError):
        order(
            lines=[{"line_id": "l1", "sku": "1", "quantity": "0", "unit_price": "1", "amount": "0"}]
        )


def test_topics_of_the_way_down() -> None:
    assert topic("tillbridge/v1", "0042", "down") == "tillbridge/v1/0042/down"
    assert topic("tillbridge/v1", "0042", "downack") == "tillbridge/v1/0042/downack"


def test_a_fulfillment_is_a_record_kind() -> None:
    record = record_adapter.validate_python(
        {
            "kind": "fulfillment",
            "key": "fulfillment:0042:1:2026-12-05:77",
            "store": "0042",
            "business_date": "2026-12-05",
            "occurred_at": "2026-12-05T11:00:00+01:00",
            "source": {"file": "t77.xml"},
            "order_number": "WEB-1001",
            "status": "partially_picked_up",
            "transaction_id": "77",
            "lines": [{"line_id": "l1", "sku": "4711", "handed_over": "1", "cancelled": "0"}],
        }
    )
    assert isinstance(record, Fulfillment)
    assert record.lines[0].handed_over == Decimal(1)


def test_reference_data_rides_the_downlink_with_one_key_per_entity_and_version() -> None:
    from contract import RefCustomer, RefItem, reference_entity, reference_key

    customer = RefCustomer(
        source="salesforce",
        customer_id="003xx1",
        version="2026-12-05T10:00:00Z",
        loyalty_id="L-77",
        tier="Gold",
        changed_at=NOW,
    )
    item = RefItem(
        source="commercetools",
        sku="4711",
        commerce_sku="SKU-4711",
        version="12",
        prices=[{"amount": "2.49", "currency": "EUR", "channel": "berlin-mitte"}],
        changed_at=NOW,
    )
    assert reference_entity(customer) == "customer:salesforce:003xx1"
    assert reference_key(customer) == "customer:customer:salesforce:003xx1:2026-12-05T10:00:00Z"
    assert reference_key(item) == "item:item:commercetools:4711:12"
    message = DownMessage(
        seq=3,
        kind="item",
        key=reference_key(item),
        issued_at=NOW,
        body=item.model_dump(mode="json"),
    )
    assert message.read() == item
