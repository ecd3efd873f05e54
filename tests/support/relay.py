"""Relay test helpers: a config for a broker and an inbox, an in-process relay, and a
test agent that publishes batches and collects the relay's acks and commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt

from central.config import CentralBrokerSettings, CentralConfig, InboxSettings, IntakeSettings
from central.inbox import Inbox, open_inbox
from central.intake import Intake
from contract import DEFAULT_PREFIX, Ack, Command

__all__ = ["TestAgent", "central_config", "running_relay"]


def central_config(
    broker_url: str,
    inbox_url: str,
    data_dir: Path,
    *,
    relay_id: str = "relay-a",
    shared_group: str | None = None,
    gap_grace_seconds: float = 300,
) -> CentralConfig:
    return CentralConfig(
        relay_id=relay_id,
        data_dir=data_dir,
        broker=CentralBrokerSettings(url=broker_url, shared_group=shared_group),
        inbox=InboxSettings(url=inbox_url),
        intake=IntakeSettings(gap_grace_seconds=gap_grace_seconds),
    )


@contextlib.asynccontextmanager
async def running_relay(config: CentralConfig) -> AsyncIterator[tuple[Intake, Inbox]]:
    """An intake task on its own inbox connection, connected and subscribed."""
    from central.feeds import fanout_for

    inbox = await open_inbox(config.inbox_url, relay_id=config.relay_id)
    # As the relay runs it: a heartbeat's resync is answered by the feeds' fan-out.
    intake = Intake(config, inbox, resync=fanout_for(config, inbox).resync)
    stop = asyncio.Event()
    task = asyncio.create_task(intake.run(stop))
    try:
        await asyncio.wait_for(intake.connected.wait(), 10)
        yield intake, inbox
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await inbox.close()


class TestAgent:
    """Publishes like a store agent; keeps every ack and command it receives."""

    __test__ = False

    def __init__(self, port: int, prefix: str = DEFAULT_PREFIX) -> None:
        self.port = port
        self.prefix = prefix
        self.acks: list[Ack] = []
        self.commands: list[tuple[str, Command]] = []
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TestAgent:
        self._client = aiomqtt.Client(
            "127.0.0.1", self.port, identifier=f"test-agent-{uuid.uuid4().hex[:8]}"
        )
        await self._client.__aenter__()
        await self._client.subscribe(f"{self.prefix}/+/ack", qos=1)
        await self._client.subscribe(f"{self.prefix}/+/command", qos=1)
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.__aexit__(None, None, None)

    async def _collect(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            assert isinstance(message.payload, bytes)
            name = message.topic.value
            if name.endswith("/ack"):
                self.acks.append(Ack.model_validate(json.loads(message.payload)))
            elif name.endswith("/command"):
                store = name.removeprefix(self.prefix + "/").split("/")[0]
                self.commands.append((store, Command.model_validate_json(message.payload)))

    async def publish(self, store: str, payload: bytes, channel: str = "records") -> None:
        assert self._client is not None
        await self._client.publish(f"{self.prefix}/{store}/{channel}", payload, qos=1)

    def acks_for(self, batch_id: str) -> list[Ack]:
        return [a for a in self.acks if a.batch_id == batch_id]
