"""The messaging seam against a real Mosquitto: the one client factory with credentials,
MQTT 3.1.1 and 5, a kept session across the broker's restart through the one reconnect
loop, and the last will of a client that dies. (TLS with a client certificate runs
through the same factory in tests/agent/test_uplink_tls.py.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from central.provision import set_password
from common.messaging import (
    Backoff,
    ClientOptions,
    Connection,
    Message,
    MessagingError,
    MqttTransport,
    keep_connected,
)
from tests.support.mosquitto import Mosquitto
from tests.support.records import wait_for


def _options(broker: Mosquitto, client_id: str, protocol: str, **more: object) -> ClientOptions:
    return ClientOptions(
        host="127.0.0.1",
        port=broker.port,
        client_id=client_id,
        protocol=protocol,  # type: ignore[arg-type]
        **more,  # type: ignore[arg-type]
    )


async def test_credentials_are_presented_and_a_wrong_password_refused(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    set_password(passwd, "0042", "right-horse-battery")
    broker = Mosquitto(
        tmp_path / "broker", extra_config=f"allow_anonymous false\npassword_file {passwd}"
    )
    broker.start()
    try:
        good = MqttTransport(
            _options(broker, "s1", "5", username="0042", password="right-horse-battery")
        )
        async with good.connect() as conn:
            await conn.publish("t/0042/status", b"hello")
        for password in ("wrong", None):
            bad = MqttTransport(_options(broker, "s2", "5", username="0042", password=password))
            with pytest.raises(MessagingError):
                async with bad.connect():
                    pass
    finally:
        broker.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_the_loop_comes_back_after_a_broker_restart_with_its_session(
    tmp_path: Path, protocol: str
) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    got: list[Message] = []
    lost: list[float] = []
    connects = 0
    stop = asyncio.Event()

    async def on_connect(conn: Connection) -> None:
        nonlocal connects
        connects += 1
        await conn.subscribe("t/+/ack", qos=1)

    async def session(conn: Connection) -> None:
        reading = asyncio.ensure_future(_read(conn, got))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if reading.done():
            reading.result()  # MessagingError: the loop connects again
        reading.cancel()

    async def on_lost(exc: MessagingError, wait: float) -> None:
        lost.append(wait)

    transport = MqttTransport(_options(broker, "listener", protocol))
    task = asyncio.create_task(
        keep_connected(
            transport,
            stop,
            backoff=Backoff(0.1, 0.4),
            on_connect=on_connect,
            session=session,
            on_lost=on_lost,
        )
    )
    sender = MqttTransport(_options(broker, "sender", protocol, clean_session=True))
    try:
        await wait_for(_is(lambda: connects == 1), timeout=10)
        async with sender.connect() as out:
            await out.publish("t/0042/ack", b"one", qos=1)
        await wait_for(_is(lambda: len(got) == 1), timeout=10)
        broker.stop()  # persistence on: the listener's session survives the restart
        await wait_for(_is(lambda: len(lost) >= 2), timeout=10)
        assert all(0.05 <= w <= 0.4 for w in lost)
        broker.start()
        await wait_for(_is(lambda: connects == 2), timeout=10)
        stop.set()
        await asyncio.wait_for(task, 10)
        # Away: the broker keeps the kept session's message until the listener is back.
        async with sender.connect() as out:
            await out.publish("t/0042/ack", b"two", qos=1)
        stop.clear()
        task = asyncio.create_task(
            keep_connected(
                transport, stop, backoff=Backoff(0.1, 0.4), on_connect=on_connect, session=session
            )
        )
        await wait_for(_is(lambda: len(got) == 2), timeout=10)
        assert [m.payload for m in got] == [b"one", b"two"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        broker.stop()


async def test_the_will_of_a_client_that_dies_reaches_its_subscribers(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    # A process of its own, killed: no DISCONNECT is ever sent, as when a till PC loses power.
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from common.messaging import ClientOptions, MqttTransport, Will

        async def main():
            options = ClientOptions(
                host="127.0.0.1", port={broker.port}, client_id="dying", keepalive=5,
                will=Will("t/0042/status", b"offline"),
            )
            async with MqttTransport(options).connect() as conn:
                await conn.publish("t/0042/status", b"online", retain=True)
                print("up", flush=True)
                await asyncio.Event().wait()

        asyncio.run(main())
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert child.stdout is not None
        assert await asyncio.to_thread(child.stdout.readline) == b"up\n"
        watcher = MqttTransport(_options(broker, "watcher", "5", clean_session=True))
        async with watcher.connect() as conn:
            await conn.subscribe("t/0042/status")
            messages = conn.messages()
            assert (await asyncio.wait_for(anext(messages), 10)).payload == b"online"
            child.kill()
            child.wait()
            will = await asyncio.wait_for(anext(messages), 15)
            assert will == Message("t/0042/status", b"offline")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        broker.stop()


async def _read(conn: Connection, got: list[Message]) -> None:
    async for message in conn.messages():
        got.append(message)


def _is(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return check()

    return probe
