"""The messaging seam: a small `Publisher`/`Subscriber` protocol over the broker, the one
client factory (`make_client`, `MqttTransport`), the one reconnect loop
(`keep_connected` with a jittered `Backoff`) and, in `common.messaging.memory`, a broker in
memory for unit tests. The agent's uplink and the relay's intake both stand on it."""

from ._link import Backoff, keep_connected, until_stopped
from ._mqtt import MqttTransport, make_client, options_for
from ._seam import (
    SESSION_EXPIRY_SECONDS,
    ClientOptions,
    Connection,
    Message,
    MessagingError,
    Publisher,
    Subscriber,
    Transport,
    Will,
)

__all__ = [
    "SESSION_EXPIRY_SECONDS",
    "Backoff",
    "ClientOptions",
    "Connection",
    "Message",
    "MessagingError",
    "MqttTransport",
    "Publisher",
    "Subscriber",
    "Transport",
    "Will",
    "keep_connected",
    "make_client",
    "options_for",
    "until_stopped",
]
