"""The shapes both programs see of the broker: a message, a connection that publishes
and subscribes, a transport that opens connections, and the one error that says the
connection failed or is gone."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Literal, NamedTuple, Protocol

__all__ = [
    "ClientOptions",
    "Connection",
    "Message",
    "MessagingError",
    "Publisher",
    "Subscriber",
    "Transport",
    "Will",
]

SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
"""How long the broker keeps a session that is not clean (its subscriptions and queued
messages) while its client is away."""


class MessagingError(Exception):
    """The connection could not be made, or broke: connect again later."""


class Message(NamedTuple):
    topic: str
    payload: bytes


class Publisher(Protocol):
    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's own PUBACK wait
    ) -> None:
        """Send one message; returns once the broker has it (QoS 1: its PUBACK)."""
        ...


class Subscriber(Protocol):
    async def subscribe(self, topic_filter: str, *, qos: int = 1) -> None: ...

    def messages(self) -> AsyncIterator[Message]:
        """The messages of every subscription, in arrival order; MessagingError when the
        connection breaks."""
        ...


class Connection(Publisher, Subscriber, Protocol):
    """One live connection to the broker."""


class Transport(Protocol):
    """Opens connections: to a real broker (`MqttTransport`) or in memory (`MemoryBroker`)."""

    def connect(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for the `async with` block; MessagingError when none can be made."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Will:
    """What the broker publishes for a client that vanishes without saying goodbye."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class ClientOptions:
    """Everything a connection to the broker is made of."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive: int = 60
    clean_session: bool = False
    """False: the broker keeps subscriptions and queues QoS 1 messages while the client is
    away (for `session_expiry_seconds` on MQTT 5)."""
    session_expiry_seconds: int = SESSION_EXPIRY_SECONDS
    will: Will | None = None
    max_inflight: int | None = None
    """QoS 1 messages unacknowledged at once; the MQTT library's default when None."""
    timeout: float | None = None
    """Seconds a connect, subscribe or publish may take; the library's default when None."""
