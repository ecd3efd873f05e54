"""A record body is validated once in a relay, at intake: routing and every target's
delivery reuse that validation. A body the intake had to mask is not: its validation was
of the body before masking, so routing validates the body as stored."""

from __future__ import annotations

import asyncio
import json

from central.inbox import Inbox, RecordState
from central.intake import Intake
from central.validated import Validated
from common.messaging.memory import MemoryBroker
from contract import encode_batch, topic
from tests.support.records import batch, wire

from .connectors import samples
from .test_delivery import Servers, config, make, state_of, target

CARD = "4111 1111 1111 1111"


async def _take(inbox: Inbox, validated: Validated, payload: bytes, records: int) -> None:
    """The intake, on a broker in memory, takes one batch and commits it."""
    broker = MemoryBroker()
    cfg = config(target("shop"), target("crm"))
    intake = Intake(cfg, inbox, transport=broker.transport("relay"), validated=validated)
    stop = asyncio.Event()
    task = asyncio.create_task(intake.run(stop))
    try:
        await asyncio.wait_for(intake.connected.wait(), 5)
        prefix = cfg.broker.topic_prefix
        async with broker.transport("store").connect() as store:
            await store.publish(topic(prefix, samples.STORE, "records"), payload)
        for _ in range(500):
            if intake.counters["committed"] == records:
                break
            await asyncio.sleep(0.01)
        assert intake.counters["committed"] == records
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_routing_and_two_targets_reuse_the_intake_validation(inbox: Inbox) -> None:
    sales = [samples.sale(str(n)) for n in range(1001, 1004)]
    payload = encode_batch(
        batch(samples.STORE, [wire(n, s.model_dump(mode="json")) for n, s in enumerate(sales, 1)])
    )
    validated = Validated()
    await _take(inbox, validated, payload, len(sales))
    assert len(validated) == len(sales)
    servers = Servers()
    delivery = make(inbox, config(target("shop"), target("crm")), servers)
    delivery.validated = validated  # as one relay process shares it
    for worker in delivery.workers:
        worker.validated = validated
    await delivery.drain()
    await delivery.aclose()
    for sale in sales:
        assert await state_of(inbox, sale.key) is RecordState.POSTED
    assert servers["shop"].puts == servers["crm"].puts == len(sales)
    assert validated.validations == 0  # routing and both targets validated nothing again


async def test_a_relay_without_the_intake_validation_validates_each_body_once(
    inbox: Inbox,
) -> None:
    sales = [samples.sale(str(n)) for n in range(2001, 2003)]
    payload = encode_batch(
        batch(samples.STORE, [wire(n, s.model_dump(mode="json")) for n, s in enumerate(sales, 1)])
    )
    await _take(inbox, Validated(), payload, len(sales))  # another relay took them
    servers = Servers()
    delivery = make(inbox, config(target("shop"), target("crm")), servers)
    await delivery.drain()
    await delivery.aclose()
    # Once per record for routing; both targets then reuse it.
    assert delivery.validated.validations == len(sales)
    assert servers["shop"].puts == servers["crm"].puts == len(sales)


async def test_a_masked_body_is_validated_as_stored(inbox: Inbox) -> None:
    sale = samples.sale("3001")
    body = sale.model_dump(mode="json")
    body["lines"][0]["description"] = f"gift for card {CARD}"  # a card number in free text
    payload = encode_batch(batch(samples.STORE, [wire(1, body)]))
    validated = Validated()
    await _take(inbox, validated, payload, 1)
    assert len(validated) == 0  # what intake validated is not what the inbox holds
    servers = Servers()
    delivery = make(inbox, config(target("shop"), target("crm")), servers)
    delivery.validated = validated
    for worker in delivery.workers:
        worker.validated = validated
    await delivery.drain()
    await delivery.aclose()
    assert validated.validations == 1
    assert await state_of(inbox, sale.key) is RecordState.POSTED
    sent = json.dumps(list(servers["shop"].records.values()))
    assert "gift for card" in sent
    assert CARD.replace(" ", "") not in sent.replace(" ", "")
