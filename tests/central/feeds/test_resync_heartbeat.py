"""A store's heartbeat asking for its items whole, through a real Mosquitto into the
relay's intake: every current item is queued on that store's downlink once, however
often the heartbeat repeats the request; a new request is answered again."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from central.feeds import fanout_for
from central.inbox import Inbox, StoreXref
from contract import Heartbeat, down_body_adapter, reference_entity
from tests.support.mosquitto import Mosquitto
from tests.support.records import wait_for
from tests.support.relay import TestAgent, central_config, running_relay

from .reference import T0, item, price


async def _pending(inbox: Inbox, count: int) -> bool:
    return len(await inbox.pending_down("0042")) >= count


async def test_a_heartbeats_resync_is_answered_once(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = central_config(mosquitto.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path)
    async with running_relay(config) as (intake, inbox), TestAgent(mosquitto.port) as agent:
        await inbox.put_xref([StoreXref("0042", commercetools_channel="berlin")])
        for body in (item("PEN", 1, price("1.00", "berlin"), price("9.00", "paris")), item("INK")):
            await inbox.put_reference(
                reference_entity(body),
                "item",
                body.source,
                body.version,
                body.model_dump_json(),
                body.changed_at,
            )
        beat = Heartbeat(store="0042", state="online", resync=["items"], resync_requested_at=T0)
        for _ in range(3):
            await agent.publish("0042", beat.model_dump_json(by_alias=True).encode(), "status")
        # The two items and the word that that is all, once for three heartbeats.
        await wait_for(lambda: _pending(inbox, 3))
        await wait_for(lambda: _heard(intake.counters, 3))
        rows = await inbox.pending_down("0042")
        assert len(rows) == 3
        pen = down_body_adapter.validate_json(rows[1].body)
        assert [p.channel for p in getattr(pen, "prices", [])] == ["berlin"]
        assert down_body_adapter.validate_json(rows[2].body).kind == "resync_done"
        again = beat.model_copy(update={"resync_requested_at": T0 + timedelta(hours=1)})
        await agent.publish("0042", again.model_dump_json(by_alias=True).encode(), "status")
        await wait_for(lambda: _pending(inbox, 6))
        assert await fanout_for(config, inbox).resync("0042", ["items"], T0) == 0


async def _heard(counters: Counter[str], count: int) -> bool:
    return counters["heartbeats"] >= count
