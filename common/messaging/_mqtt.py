"""The one place an MQTT client is made (aiomqtt over paho): TLS, credentials, MQTT 3.1.1
or 5, clean session or not, last will. Errors of the library leave here as
MessagingError, so nothing above it knows which library speaks to the broker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ._seam import ClientOptions, Connection, Message, MessagingError, Will

__all__ = ["MqttTransport", "make_client", "options_for"]


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


class BrokerLike(Protocol):
    """The broker settings both programs' configs have (`[*.broker]`)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> _Secret | None: ...
    @property
    def protocol(self) -> Literal["5", "3.1.1"]: ...
    @property
    def keepalive(self) -> int: ...
    def ssl_context(self) -> ssl.SSLContext | None: ...


def options_for(broker: BrokerLike, client_id: str, **more: Any) -> ClientOptions:
    """The options of a program's broker settings; `more` sets the rest (will, session…)."""
    password = broker.password.get_secret_value() if broker.password is not None else None
    return ClientOptions(
        host=broker.host,
        port=broker.port,
        client_id=client_id,
        username=broker.username,
        password=password,
        tls=broker.ssl_context(),
        protocol=broker.protocol,
        keepalive=broker.keepalive,
        **more,
    )


def make_client(options: ClientOptions) -> aiomqtt.Client:
    """An unconnected client (`async with` connects it)."""
    extra: dict[str, Any] = {}
    if options.will is not None:
        will: Will = options.will
        extra["will"] = aiomqtt.Will(will.topic, will.payload, qos=will.qos, retain=will.retain)
    if options.max_inflight is not None:
        extra["max_inflight_messages"] = options.max_inflight
    if options.timeout is not None:
        extra["timeout"] = options.timeout
    if options.protocol == "5":
        extra["protocol"] = aiomqtt.ProtocolVersion.V5
        extra["clean_start"] = options.clean_session
        if not options.clean_session:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = options.session_expiry_seconds
            extra["properties"] = properties
    else:
        extra["protocol"] = aiomqtt.ProtocolVersion.V311
        extra["clean_session"] = options.clean_session
    return aiomqtt.Client(
        options.host,
        options.port,
        identifier=options.client_id,
        username=options.username,
        password=options.password,
        keepalive=options.keepalive,
        tls_context=options.tls,
        **extra,
    )


class _MqttConnection:
    """A connected aiomqtt client behind the `Connection` protocol."""

    __slots__ = ("_client",)

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's own PUBACK wait
    ) -> None:
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain, timeout=timeout)
        except aiomqtt.MqttError as exc:
            raise MessagingError(str(exc)) from exc

    async def subscribe(self, topic_filter: str, *, qos: int = 1) -> None:
        try:
            await self._client.subscribe(topic_filter, qos=qos)
        except aiomqtt.MqttError as exc:
            raise MessagingError(str(exc)) from exc

    async def messages(self) -> AsyncIterator[Message]:
        try:
            async for message in self._client.messages:
                payload = message.payload
                yield Message(message.topic.value, payload if isinstance(payload, bytes) else b"")
        except aiomqtt.MqttError as exc:
            raise MessagingError(str(exc)) from exc


def _collect_disconnect(client: aiomqtt.Client) -> None:
    """A link lost while the session was stopping (the broker went away too) leaves its
    error in aiomqtt's disconnect future, which `__aexit__` does not read; unread, asyncio
    logs "Future exception was never retrieved" at ERROR when it is collected. The loss is
    already handled: read it here."""
    disconnected = getattr(client, "_disconnected", None)
    if isinstance(disconnected, asyncio.Future) and disconnected.done():
        with contextlib.suppress(asyncio.CancelledError):
            disconnected.exception()


@dataclasses.dataclass(frozen=True, slots=True)
class MqttTransport:
    """Connections to a real broker. `options` may be a function, called for each
    connection: TLS files and the like are then read again at every reconnect."""

    options: ClientOptions | Callable[[], ClientOptions]

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        options = self.options if isinstance(self.options, ClientOptions) else self.options()
        client = make_client(options)
        try:
            await client.__aenter__()
        except (aiomqtt.MqttError, OSError) as exc:  # OSError: refused, TLS handshake
            raise MessagingError(str(exc)) from exc
        try:
            yield _MqttConnection(client)
        finally:
            # A connection gone already leaves nothing to close.
            try:
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.__aexit__(None, None, None)
            finally:
                _collect_disconnect(client)
