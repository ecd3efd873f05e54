"""Per-store broker credentials against a real Mosquitto: the password file is
Mosquitto's own format, the ACL keeps every store to its own topics, the relay reads
and answers all of them, and the shipped mosquitto.conf serves stores over TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from agent.config import AgentConfig, load_agent_config
from central.cli import app
from central.downlink import DownlinkSender
from central.inbox import open_inbox
from central.provision import (
    STORE_ID,
    acl_block,
    hash_password,
    provision_store,
    set_password,
    verify_password,
)
from contract import Batch, DownAck, decode_down, encode_batch, encode_down
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.online_orders import order, queued
from tests.support.records import batch, sale_body, wait_for, wire
from tests.support.relay import central_config, running_relay
from tests.support.tls import make_pki

PREFIX = "tillbridge/v1"
PACKAGING = Path(__file__).parents[2] / "packaging" / "mosquitto"
RELAY_PASSWORD = "relay-password-for-tests"


@dataclass
class Fleet:
    """Two provisioned stores and the relay's user, in one password file and ACL."""

    passwd: Path
    acl: Path
    out: Path
    passwords: dict[str, str] = field(default_factory=dict)


def provision_fleet(root: Path, stores: tuple[str, ...] = ("0042", "0043")) -> Fleet:
    fleet = Fleet(passwd=root / "mosquitto" / "passwd", acl=root / "mosquitto" / "acl", out=root)
    for store in stores:
        done = provision_store(
            store,
            broker_url="mqtts://broker.example.com:8883",
            prefix=PREFIX,
            relay_user="relay",
            password_file=fleet.passwd,
            acl_file=fleet.acl,
            out=fleet.out,
        )
        fleet.passwords[store] = done.agent_password.read_text().strip()
    set_password(fleet.passwd, "relay", RELAY_PASSWORD)
    fleet.passwords["relay"] = RELAY_PASSWORD
    return fleet


def secured_broker(workdir: Path, fleet: Fleet) -> Mosquitto:
    return Mosquitto(
        workdir,
        extra_config=f"allow_anonymous false\npassword_file {fleet.passwd}\nacl_file {fleet.acl}",
    )


class Client:
    """An MQTT client that keeps every message it receives, in order."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.mqtt = client
        self.received: list[tuple[str, bytes]] = []

    def payloads(self, topic: str) -> list[bytes]:
        return [payload for name, payload in self.received if name == topic]

    async def wait_for(self, topic: str, payload: bytes) -> None:
        await wait_for(lambda: _now((topic, payload) in self.received))


@contextlib.asynccontextmanager
async def connected(
    port: int,
    user: str | None,
    password: str | None,
    *,
    tls: ssl.SSLContext | None = None,
    identifier: str | None = None,
    timeout: float = 5,
    protocol: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V5,
) -> AsyncIterator[Client]:
    mqtt = aiomqtt.Client(
        "127.0.0.1",
        port,
        username=user,
        password=password,
        identifier=identifier or f"test-{uuid.uuid4().hex[:8]}",
        protocol=protocol,
        tls_context=tls,
        timeout=timeout,
    )
    async with mqtt:
        client = Client(mqtt)

        async def collect() -> None:
            async for message in mqtt.messages:
                assert isinstance(message.payload, bytes)
                client.received.append((message.topic.value, message.payload))

        task = asyncio.create_task(collect())
        try:
            yield client
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def _now(value: object) -> object:
    return value


def t(store: str, channel: str) -> str:
    return f"{PREFIX}/{store}/{channel}"


# --- the password file -------------------------------------------------------------


def test_an_entry_is_mosquittos_pbkdf2_sha512_format() -> None:
    entry = hash_password("s3cret")
    assert re.fullmatch(r"\$7\$1000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", entry)
    assert verify_password("s3cret", entry)
    assert not verify_password("s3cret!", entry)
    assert hash_password("s3cret") != entry  # a fresh salt each time


def test_an_entry_written_by_mosquitto_passwd_verifies(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    passwd = tmp_path / "passwd"
    subprocess.run([tool, "-c", "-b", str(passwd), "0042", "s3cret"], check=True)
    user, entry = passwd.read_text().strip().split(":", 1)
    assert (user, verify_password("s3cret", entry)) == ("0042", True)


def test_the_store_id_rule_is_the_contracts() -> None:
    pattern = next(m.pattern for m in Batch.model_fields["store"].metadata if hasattr(m, "pattern"))
    assert STORE_ID.pattern == pattern


# --- the command -------------------------------------------------------------------


def _central_toml(tmp_path: Path, broker_url: str = "mqtt://127.0.0.1:1883") -> Path:
    config = tmp_path / "central.toml"
    data = tmp_path / "central"
    config.write_text(
        f'[central]\ndata_dir = "{data}"\n[central.broker]\nurl = "{broker_url}"\n'
        'username = "relay"\n'
    )
    return config


def test_provision_store_writes_the_broker_files_and_a_ready_agent_config(
    tmp_path: Path,
) -> None:
    config = _central_toml(tmp_path)
    out = tmp_path / "out"
    agent_dir = out / "0042"
    args = ["provision-store", "0042", "--config", str(config), "--out", str(out)]
    args += ["--broker-url", "mqtts://broker.example.com:8883", "--agent-dir", str(agent_dir)]
    runner = CliRunner()

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    password = (agent_dir / "mqtt_password").read_text().strip()
    assert len(password) >= 43
    assert password not in first.output
    assert "broker user added" in first.output
    assert f"Password written to {agent_dir / 'mqtt_password'}" in first.output
    assert (agent_dir / "mqtt_password").stat().st_mode & 0o777 == 0o600
    passwd = tmp_path / "central" / "mosquitto" / "passwd"
    acl = tmp_path / "central" / "mosquitto" / "acl"
    (line,) = passwd.read_text().splitlines()
    assert line.startswith("0042:$7$")
    assert verify_password(password, line.split(":", 1)[1])
    assert acl_block(PREFIX, "relay") in acl.read_text()

    # The agent config is ready once the CA sits beside it.
    (agent_dir / "ca.pem").write_text("placeholder")
    agent = load_agent_config(agent_dir / "agent.toml")
    assert isinstance(agent, AgentConfig)
    assert (agent.store, agent.broker.username, agent.broker.url) == (
        "0042",
        "0042",
        "mqtts://broker.example.com:8883",
    )
    assert agent.broker.password is not None
    assert agent.broker.password.get_secret_value() == password
    assert agent.broker.ca_file == agent_dir / "ca.pem"

    acl_before = acl.read_text()
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "password rotated" in again.output
    assert "already in place" in again.output
    rotated = (agent_dir / "mqtt_password").read_text().strip()
    assert rotated != password
    (line,) = passwd.read_text().splitlines()
    assert verify_password(rotated, line.split(":", 1)[1])
    assert acl.read_text() == acl_before
    assert acl_before.count("# BEGIN tillbridge") == 1


TLS_URL = ["--broker-url", "mqtts://broker.example.com:8883"]


@pytest.mark.parametrize(
    ("store", "options", "message"),
    [
        ("00/42", TLS_URL, "is not 1-64 letters"),
        ("..", TLS_URL, "is not 1-64 letters"),
        ("relay", TLS_URL, "is the relay's broker user name"),
        ("0042", ["--broker-url", "mqtt://broker.example.com:1883"], "use mqtts://"),
        ("0042", ["--broker-url", "https://broker.example.com"], "is not mqtts://host:port"),
        ("0042", [*TLS_URL, "--prefix", "tillbridge/#"], "topic prefix"),
        ("0042", [], "--broker-url is needed"),  # the relay's own broker is on loopback
    ],
)
def test_provision_store_refuses_what_it_cannot_provision(
    tmp_path: Path, store: str, options: list[str], message: str
) -> None:
    config = _central_toml(tmp_path)
    result = CliRunner().invoke(app, ["provision-store", store, "-c", str(config), *options])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "central" / "mosquitto").exists()


def test_the_acl_template_is_what_the_command_writes() -> None:
    template = (PACKAGING / "acl").read_text()
    assert acl_block(PREFIX, "relay") in template


# --- the broker --------------------------------------------------------------------


async def attempt(
    port: int, user: str, password: str, topic: str, protocol: aiomqtt.ProtocolVersion
) -> None:
    """One publish the ACL must refuse, on a connection of its own: Mosquitto 2.0 may
    answer a refused publish by closing the connection (after a PUBACK saying "not
    authorized" on MQTT 5), and a client that never hears back gives up after 0.5 s."""
    with contextlib.suppress(aiomqtt.MqttError):
        async with connected(port, user, password, protocol=protocol) as client:
            await client.mqtt.publish(topic, b"forged", qos=1, timeout=0.5)


async def test_the_broker_keeps_each_store_to_its_own_topics(tmp_path: Path) -> None:
    fleet = provision_fleet(tmp_path)
    broker = secured_broker(tmp_path / "broker", fleet)
    broker.start()
    try:
        pw = fleet.passwords
        async with (
            connected(broker.port, "relay", pw["relay"]) as relay,
            connected(broker.port, "0042", pw["0042"]) as a,
            connected(broker.port, "0043", pw["0043"]) as b,
            connected(broker.port, "0042", pw["0042"]) as snoop,
        ):
            # The relay subscribes as several relays do: through a shared subscription.
            await relay.mqtt.subscribe(f"$share/relays/{PREFIX}/+/records", qos=1)
            await relay.mqtt.subscribe(f"{PREFIX}/+/status", qos=1)
            for store, client in (("0042", a), ("0043", b)):
                await client.mqtt.subscribe(t(store, "ack"), qos=1)
                await client.mqtt.subscribe(t(store, "command"), qos=1)
            # Store A reaching for B's acks and commands, directly and by wildcard.
            for name in (t("0043", "ack"), t("0043", "command"), f"{PREFIX}/+/ack"):
                await snoop.mqtt.subscribe(name, qos=1)
            await snoop.mqtt.subscribe(f"{PREFIX}/+/command", qos=1)

            # A writes as B (records, status, an ack B would trust) and writes what only
            # the relay may (an ack and a command of its own), over both protocols.
            forged = [t("0043", "records"), t("0043", "status"), t("0043", "ack")]
            forged += [t("0043", "command"), t("0042", "ack"), t("0042", "command")]
            for name in forged:
                await attempt(broker.port, "0042", pw["0042"], name, aiomqtt.ProtocolVersion.V311)
            await attempt(broker.port, "0042", pw["0042"], forged[0], aiomqtt.ProtocolVersion.V5)

            # What A may write arrives; published after the forgeries, it shows that
            # they had their chance to arrive too.
            await a.mqtt.publish(t("0042", "status"), b"a-status", qos=1)
            await a.mqtt.publish(t("0042", "records"), b"a-own", qos=1)
            await b.mqtt.publish(t("0043", "records"), b"b-own", qos=1)
            await relay.wait_for(t("0042", "records"), b"a-own")
            await relay.wait_for(t("0042", "status"), b"a-status")
            await relay.wait_for(t("0043", "records"), b"b-own")

            # The relay answers both stores; B's ack and command go out first, so when
            # A has its own they would have reached A too, had the broker let them.
            await relay.mqtt.publish(t("0043", "ack"), b"ack-for-b", qos=1)
            await relay.mqtt.publish(t("0043", "command"), b"command-for-b", qos=1)
            await relay.mqtt.publish(t("0042", "ack"), b"ack-for-a", qos=1)
            await relay.mqtt.publish(t("0042", "command"), b"command-for-a", qos=1)
            await a.wait_for(t("0042", "command"), b"command-for-a")
            await b.wait_for(t("0043", "command"), b"command-for-b")
            await snoop.wait_for(t("0042", "command"), b"command-for-a")

            assert sorted(relay.received) == [
                (t("0042", "records"), b"a-own"),
                (t("0042", "status"), b"a-status"),
                (t("0043", "records"), b"b-own"),
            ]
            assert sorted(a.received) == [
                (t("0042", "ack"), b"ack-for-a"),
                (t("0042", "command"), b"command-for-a"),
            ]
            assert sorted(snoop.received) == sorted(a.received)
            assert sorted(b.received) == [
                (t("0043", "ack"), b"ack-for-b"),
                (t("0043", "command"), b"command-for-b"),
            ]
    finally:
        broker.stop()


async def test_the_broker_keeps_each_stores_downlink_to_itself(tmp_path: Path) -> None:
    fleet = provision_fleet(tmp_path)
    broker = secured_broker(tmp_path / "broker", fleet)
    broker.start()
    try:
        pw = fleet.passwords
        async with (
            connected(broker.port, "relay", pw["relay"]) as relay,
            connected(broker.port, "0042", pw["0042"]) as a,
            connected(broker.port, "0043", pw["0043"]) as b,
            connected(broker.port, "0042", pw["0042"]) as snoop,
        ):
            await relay.mqtt.subscribe(f"$share/relays/{PREFIX}/+/downack", qos=1)
            for store, client in (("0042", a), ("0043", b)):
                await client.mqtt.subscribe(t(store, "down"), qos=1)
            # Store A reaching for B's downlink, directly and by wildcard.
            await snoop.mqtt.subscribe(t("0043", "down"), qos=1)
            await snoop.mqtt.subscribe(f"{PREFIX}/+/down", qos=1)
            await snoop.mqtt.subscribe(f"{PREFIX}/+/downack", qos=1)

            # A answers for B, and sends a downlink message as only the relay may.
            for name in (t("0043", "downack"), t("0043", "down"), t("0042", "down")):
                await attempt(broker.port, "0042", pw["0042"], name, aiomqtt.ProtocolVersion.V311)
            await attempt(
                broker.port, "0042", pw["0042"], t("0043", "downack"), aiomqtt.ProtocolVersion.V5
            )
            await a.mqtt.publish(t("0042", "downack"), b"a-answer", qos=1)
            await b.mqtt.publish(t("0043", "downack"), b"b-answer", qos=1)
            await relay.wait_for(t("0042", "downack"), b"a-answer")
            await relay.wait_for(t("0043", "downack"), b"b-answer")

            await relay.mqtt.publish(t("0043", "down"), b"orders-for-b", qos=1)
            await relay.mqtt.publish(t("0042", "down"), b"orders-for-a", qos=1)
            await a.wait_for(t("0042", "down"), b"orders-for-a")
            await b.wait_for(t("0043", "down"), b"orders-for-b")
            await snoop.wait_for(t("0042", "down"), b"orders-for-a")

            assert sorted(relay.received) == [
                (t("0042", "downack"), b"a-answer"),
                (t("0043", "downack"), b"b-answer"),
            ]
            assert a.received == [(t("0042", "down"), b"orders-for-a")]
            assert snoop.received == a.received
            assert b.received == [(t("0043", "down"), b"orders-for-b")]
    finally:
        broker.stop()


async def test_the_relay_sends_the_way_down_through_the_acl_with_a_shared_subscription(
    tmp_path: Path,
) -> None:
    fleet = provision_fleet(tmp_path, ("0042", "0043"))
    broker = secured_broker(tmp_path / "broker", fleet)
    broker.start()
    try:
        config = central_config(
            broker.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path, shared_group="relays"
        )
        config.broker.username = "relay"
        config.broker.password = SecretStr(RELAY_PASSWORD)
        inbox = await open_inbox(config.inbox_url)
        sender = DownlinkSender(config, inbox)
        stop = asyncio.Event()
        async with (
            connected(broker.port, "0042", fleet.passwords["0042"]) as store,
            connected(broker.port, "0043", fleet.passwords["0043"]) as other,
        ):
            await store.mqtt.subscribe(t("0042", "down"), qos=1)
            await inbox.enqueue(*queued(order("0042", "A1")))
            task = asyncio.create_task(sender.run(stop))
            try:
                await wait_for(lambda: _now(store.payloads(t("0042", "down"))))
                down = decode_down(store.payloads(t("0042", "down"))[0])
                # Store 0043 answers for 0042 on its own topic: the broker lets it through,
                # the relay refuses it.
                forged = DownAck(store="0042", batch_id=down.batch_id, committed=[1], through=1)
                await other.mqtt.publish(t("0043", "downack"), encode_down(forged), qos=1)
                await wait_for(lambda: _now(sender.counters["spoofed_answers"] == 1))
                assert [r.seq for r in await inbox.pending_down("0042")] == [1]
                answer = DownAck(store="0042", batch_id=down.batch_id, committed=[1], through=1)
                await store.mqtt.publish(t("0042", "downack"), encode_down(answer), qos=1)

                async def settled() -> bool:
                    return await inbox.pending_down("0042") == []

                await wait_for(settled)
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)
                await inbox.close()
    finally:
        broker.stop()


async def test_a_wrong_password_an_unknown_user_and_no_user_are_refused(tmp_path: Path) -> None:
    fleet = provision_fleet(tmp_path, ("0042",))
    broker = secured_broker(tmp_path / "broker", fleet)
    broker.start()
    try:
        for user, password in (
            ("0042", fleet.passwords["0042"] + "x"),
            ("0042", RELAY_PASSWORD),
            ("0099", fleet.passwords["0042"]),
            (None, None),
        ):
            with pytest.raises(aiomqtt.MqttError):
                async with connected(broker.port, user, password):
                    pass
        async with connected(broker.port, "0042", fleet.passwords["0042"]):
            pass
    finally:
        broker.stop()


async def test_re_provisioning_rotates_the_password_at_the_next_reload(tmp_path: Path) -> None:
    fleet = provision_fleet(tmp_path, ("0042",))
    old = fleet.passwords["0042"]
    broker = secured_broker(tmp_path / "broker", fleet)
    broker.start()
    try:
        done = provision_store(
            "0042",
            broker_url="mqtts://broker.example.com:8883",
            prefix=PREFIX,
            relay_user="relay",
            password_file=fleet.passwd,
            acl_file=fleet.acl,
            out=fleet.out,
        )
        assert (done.rotated, done.acl_changed) == (True, False)
        new = done.agent_password.read_text().strip()
        assert broker.process is not None
        broker.process.send_signal(signal.SIGHUP)

        async def old_refused() -> bool | None:
            try:
                async with connected(broker.port, "0042", old):
                    return None
            except aiomqtt.MqttError:
                return True

        await wait_for(old_refused)
        async with connected(broker.port, "0042", new):
            pass
    finally:
        broker.stop()


async def test_the_relay_commits_and_acks_through_the_acl_with_a_shared_subscription(
    tmp_path: Path,
) -> None:
    fleet = provision_fleet(tmp_path, ("0042",))
    broker = secured_broker(tmp_path / "broker", fleet)
    broker.start()
    try:
        config = central_config(
            broker.url, f"sqlite:///{tmp_path / 'inbox.db'}", tmp_path, shared_group="relays"
        )
        config.broker.username = "relay"
        config.broker.password = SecretStr(RELAY_PASSWORD)
        sent = batch("0042", [wire(1, sale_body("0042", "T1"))])
        async with (
            running_relay(config) as (_, inbox),
            connected(broker.port, "0042", fleet.passwords["0042"]) as store,
        ):
            await store.mqtt.subscribe(t("0042", "ack"), qos=1)
            await store.mqtt.publish(t("0042", "records"), encode_batch(sent), qos=1)
            await wait_for(lambda: _now(store.payloads(t("0042", "ack"))))
            assert (await inbox.stats())["records"] == 1
    finally:
        broker.stop()


# --- the shipped broker config -----------------------------------------------------


def _render_template(workdir: Path, fleet: Fleet, tls_port: int, plain_port: int) -> str:
    """packaging/mosquitto/mosquitto.conf with this test's ports, files and certificates."""
    pki = make_pki(workdir / "pki", "broker")
    values = {
        "password_file": str(fleet.passwd),
        "acl_file": str(fleet.acl),
        "persistence_location": f"{workdir}/",
        "log_dest": f"file {workdir / 'mosquitto.log'}",
        "certfile": str(pki.server_cert),
        "keyfile": str(pki.server_key),
    }
    lines = []
    for line in (PACKAGING / "mosquitto.conf").read_text().splitlines():
        key = line.split(" ", 1)[0]
        if line == "listener 8883":
            line = f"listener {tls_port} 127.0.0.1"
        elif line == "listener 1883 127.0.0.1":
            line = f"listener {plain_port} 127.0.0.1"
        elif key in values:
            line = f"{key} {values.pop(key)}"
        lines.append(line)
    assert values == {}, f"the template lost {sorted(values)}"
    # Started as root, mosquitto would switch to its own user, which cannot read here.
    lines.insert(0, "user root")
    return "\n".join(lines) + "\n"


async def test_the_shipped_config_serves_stores_over_tls_and_the_relay_on_loopback(
    tmp_path: Path,
) -> None:
    fleet = provision_fleet(tmp_path, ("0042", "0043"))
    workdir = tmp_path / "broker"
    tls_port, plain_port = free_port(), free_port()
    broker = Mosquitto(
        workdir, port=plain_port, config=_render_template(workdir, fleet, tls_port, plain_port)
    )
    broker.start()
    try:
        trusted = ssl.create_default_context(cafile=str(workdir / "pki" / "broker-ca.pem"))
        stranger = ssl.create_default_context(cafile=str(make_pki(tmp_path / "other", "other").ca))
        pw = fleet.passwords
        with pytest.raises((aiomqtt.MqttError, ssl.SSLError)):
            async with connected(tls_port, "0042", pw["0042"], tls=stranger):
                pass
        with pytest.raises(aiomqtt.MqttError):  # no TLS on the TLS port
            async with connected(tls_port, "0042", pw["0042"], timeout=1):
                pass
        async with (
            connected(plain_port, "relay", pw["relay"]) as relay,
            connected(tls_port, "0042", pw["0042"], tls=trusted, identifier="agent-0042") as a,
        ):
            await relay.mqtt.subscribe(f"{PREFIX}/+/records", qos=1)
            await a.mqtt.subscribe(t("0042", "ack"), qos=1)
            # Store B connects with A's client id: the broker uses B's user name as its
            # id instead, so A keeps its connection and its session.
            async with connected(
                tls_port, "0043", pw["0043"], tls=trusted, identifier="agent-0042"
            ) as b:
                await b.mqtt.publish(t("0043", "records"), b"b-over-tls", qos=1)
                await relay.wait_for(t("0043", "records"), b"b-over-tls")
            await a.mqtt.publish(t("0042", "records"), b"a-over-tls", qos=1)
            await relay.wait_for(t("0042", "records"), b"a-over-tls")
            await relay.mqtt.publish(t("0042", "ack"), b"ack-over-tls", qos=1)
            await a.wait_for(t("0042", "ack"), b"ack-over-tls")
    finally:
        broker.stop()
