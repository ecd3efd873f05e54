"""The uplink over TLS with a client certificate, against a real Mosquitto TLS listener:
records arrive when the broker's certificate checks out, and nothing is sent to a broker
whose certificate a different CA signed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.config import AgentConfig, OutboxSettings, UplinkSettings
from agent.outbox import Outbox
from common.settings import BrokerSettings
from tests.agent.test_uplink import STORE, drained, fill, running_uplink
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.relay import central_config, running_relay
from tests.support.tls import make_pki


def tls_broker(tmp_path: Path) -> tuple[Mosquitto, int]:
    pki = make_pki(tmp_path / "pki", "broker")
    tls_port = free_port()
    broker = Mosquitto(
        tmp_path / "mosquitto",
        extra_config="\n".join(
            [
                f"listener {tls_port} 127.0.0.1",
                f"cafile {pki.ca}",
                f"certfile {pki.server_cert}",
                f"keyfile {pki.server_key}",
                "require_certificate true",
                "tls_version tlsv1.2",
            ]
        ),
    )
    return broker, tls_port


def agent_config(tmp_path: Path, port: int, pki_dir: Path, name: str) -> AgentConfig:
    return AgentConfig(
        store=STORE,
        data_dir=tmp_path,
        broker=BrokerSettings(
            url=f"mqtts://127.0.0.1:{port}",
            ca_file=pki_dir / f"{name}-ca.pem",
            cert_file=pki_dir / f"{name}-client.pem",
            key_file=pki_dir / f"{name}-client.key",
        ),
        uplink=UplinkSettings(reconnect_min_seconds=0.1, reconnect_max_seconds=0.5),
    )


async def test_records_travel_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    broker, tls_port = tls_broker(tmp_path)
    broker.start()
    outbox = await Outbox.open(tmp_path / "o.db", OutboxSettings(), key_file=tmp_path / "k")
    try:
        relay = central_config(broker.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path / "c")
        await fill(outbox, 200)
        async with running_relay(relay) as (_, inbox):
            config = agent_config(tmp_path, tls_port, tmp_path / "pki", "broker")
            async with running_uplink(config, outbox) as uplink:
                await drained(outbox, inbox, 200)
                assert uplink.connected.is_set()
    finally:
        await outbox.close()
        broker.stop()


async def test_a_broker_signed_by_another_ca_gets_nothing(tmp_path: Path) -> None:
    broker, tls_port = tls_broker(tmp_path)
    broker.start()
    make_pki(tmp_path / "pki", "stranger")  # a CA the broker's certificate does not chain to
    outbox = await Outbox.open(tmp_path / "o.db", OutboxSettings(), key_file=tmp_path / "k")
    try:
        await fill(outbox, 10)
        config = agent_config(tmp_path, tls_port, tmp_path / "pki", "stranger")
        async with running_uplink(config, outbox) as uplink:
            await asyncio.sleep(1.5)
            assert not uplink.connected.is_set()
            assert uplink.last_error is not None
            assert uplink.batches_sent == 0
        assert (await outbox.stats()).pending == 10
    finally:
        await outbox.close()
        broker.stop()
