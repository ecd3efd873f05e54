"""A stand-in for central's downlink sender in tests: publishes `DownBatch`es on
`{prefix}/{store}/down` and collects the `DownAck`s from `{prefix}/{store}/downack`,
over a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt

from contract import DownAck, DownMessage, decode_down_ack
from tests.agent.downlink.orders import STORE, payload
from tests.support.records import wait_for

PREFIX = "tillbridge/v1"


def downlink_config(tmp_path: Path, broker_url: str, **downlink: object) -> Path:
    """The agent's config file with `[agent.downlink]` (and the daemon test's sources)."""
    from tests.agent.test_daemon import write_config

    config = write_config(tmp_path, broker_url, status_listen="127.0.0.1:0")
    table = {"enabled": True, "folder": str(tmp_path / "import"), **downlink}
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
    config.write_text(config.read_text() + "[agent.downlink]\n" + lines)
    return config


class Central:
    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.acks: list[DownAck] = []
        self.raw: list[tuple[str, bytes]] = []
        self.heartbeats: list[dict[str, object]] = []

    async def send(self, *messages: DownMessage, store: str = STORE, to: str = STORE) -> None:
        await self.client.publish(f"{PREFIX}/{to}/down", payload(*messages, store=store), qos=1)

    async def ack_for(self, seqs: set[int], timeout: float = 15) -> DownAck:
        """The first answer (from now on) that names all of `seqs`."""
        seen = len(self.acks)

        async def found() -> DownAck | None:
            for ack in self.acks[seen:]:
                if seqs <= set(ack.committed):
                    return ack
            return None

        ack: DownAck = await wait_for(found, timeout=timeout)
        return ack

    async def _collect(self) -> None:
        async for message in self.client.messages:
            data = bytes(message.payload)  # type: ignore[arg-type]
            self.raw.append((str(message.topic), data))
            if str(message.topic).endswith("/downack"):
                self.acks.append(decode_down_ack(data))
            elif str(message.topic).endswith("/status"):
                self.heartbeats.append(json.loads(data))


@contextlib.asynccontextmanager
async def central(port: int) -> AsyncIterator[Central]:
    async with aiomqtt.Client("127.0.0.1", port, identifier="central-downlink-test") as client:
        await client.subscribe(f"{PREFIX}/+/downack", qos=1)
        await client.subscribe(f"{PREFIX}/+/status", qos=1)
        stand_in = Central(client)
        task = asyncio.create_task(stand_in._collect())
        try:
            yield stand_in
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
