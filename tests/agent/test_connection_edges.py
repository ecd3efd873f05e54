"""Connection edges field support meets: a URL whose scheme does not match the broker's
listener is named as such (in the uplink's error, in `doctor`), the agent stops at once
whatever the broker does, `config check` refuses a password or TLS files over plain
mqtt:// to another host, and the last error is cleared once the agent is connected."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.config import AgentConfig, OutboxSettings, UplinkSettings, load_agent_config
from agent.outbox import Outbox
from agent.support import doctor
from agent.uplink import Uplink
from common.settings import BrokerSettings, ConfigError
from tests.agent.test_uplink import STORE, fill, running_uplink
from tests.agent.test_uplink_tls import tls_broker
from tests.support.mosquitto import Mosquitto
from tests.support.records import wait_for


def config_for(tmp_path: Path, url: str, **broker: object) -> AgentConfig:
    return AgentConfig(
        store=STORE,
        data_dir=tmp_path,
        broker=BrokerSettings(url=url, **broker),  # type: ignore[arg-type]
        uplink=UplinkSettings(reconnect_min_seconds=0.1, reconnect_max_seconds=0.5),
    )


@pytest.fixture
async def outbox(tmp_path: Path) -> Outbox:
    box = await Outbox.open(tmp_path / "o.db", OutboxSettings(), key_file=tmp_path / "k")
    yield box  # type: ignore[misc]
    await box.close()


async def test_plain_mqtt_to_a_tls_port_is_named_and_stop_is_prompt(
    tmp_path: Path, outbox: Outbox
) -> None:
    broker, tls_port = tls_broker(tmp_path)
    broker.start()
    try:
        await fill(outbox, 5)
        config = config_for(tmp_path, f"mqtt://127.0.0.1:{tls_port}")
        uplink = Uplink(config, outbox, lambda connected: None)  # type: ignore[arg-type,return-value]
        stop = asyncio.Event()
        task = asyncio.create_task(uplink.run(stop))

        async def named() -> str | None:
            return uplink.last_error

        error = await wait_for(named, timeout=45)
        assert f"the broker expects TLS on port {tls_port}; use mqtts://" in error
        assert uplink.last_error_at is not None
        # Whatever the broker does with the plain CONNECT, a stop is not held by it.
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 3

        checks = await asyncio.to_thread(doctor, config, broker_timeout=3)
        [check] = [c for c in checks if c.name == "broker"]
        assert not check.ok
        assert "expects TLS" in check.detail
        assert "firewall" not in check.fix
    finally:
        broker.stop()


async def test_mqtts_to_a_plain_port_is_named(
    tmp_path: Path, outbox: Outbox, mosquitto: Mosquitto
) -> None:
    config = config_for(tmp_path, f"mqtts://127.0.0.1:{mosquitto.port}")
    async with running_uplink(config, outbox) as uplink:

        async def named() -> str | None:
            return uplink.last_error

        error = await wait_for(named, timeout=30)
        assert f"the broker speaks plain MQTT on port {mosquitto.port}, not TLS" in error
    checks = await asyncio.to_thread(doctor, config, broker_timeout=3)
    [check] = [c for c in checks if c.name == "broker"]
    assert "speaks plain MQTT" in check.detail


async def test_the_last_error_is_cleared_once_connected(
    tmp_path: Path, outbox: Outbox, mosquitto: Mosquitto
) -> None:
    mosquitto.stop()
    config = config_for(tmp_path, mosquitto.url)
    async with running_uplink(config, outbox) as uplink:

        async def failed() -> str | None:
            return uplink.last_error

        await wait_for(failed, timeout=15)
        mosquitto.start()
        await asyncio.wait_for(uplink.connected.wait(), 15)
        assert uplink.last_error is None
        assert uplink.last_error_at is None


def write(tmp_path: Path, broker: str) -> Path:
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "ca.pem").write_text("not read by config check\n")
    file = tmp_path / "agent.toml"
    file.write_text(
        f'[agent]\nstore = "0042"\ndata_dir = "{tmp_path / "data"}"\n[agent.broker]\n{broker}'
    )
    return file


@pytest.mark.parametrize(
    ("broker", "key"),
    [
        ('url = "mqtt://broker.example.com:1883"\npassword_file = "PW"\n', "password_file"),
        ('url = "mqtt://broker.example.com:8883"\nca_file = "CA"\n', "ca_file"),
    ],
)
def test_config_check_refuses_secrets_over_plain_mqtt(
    tmp_path: Path, broker: str, key: str
) -> None:
    text = broker.replace("PW", str(tmp_path / "pw")).replace("CA", str(tmp_path / "ca.pem"))
    file = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_agent_config(file)
    [problem] = caught.value.problems
    assert problem.startswith(f"{file}: agent.broker.{key}: agent.broker.url is plain mqtt://")
    assert "allow_plaintext" in problem
    # Said out loud, it is allowed; and a broker on this machine never needed it.
    load_agent_config(write(tmp_path, text + "allow_plaintext = true\n"))
    load_agent_config(write(tmp_path, text.replace("mqtt://", "mqtts://")))
    # A password to a broker on this machine crosses no network; a CA file is ignored
    # over plain MQTT wherever the broker is.
    local = text.replace("broker.example.com", "127.0.0.1")
    if key == "password_file":
        load_agent_config(write(tmp_path, local))
    else:
        with pytest.raises(ConfigError):
            load_agent_config(write(tmp_path, local))
