"""A broker in memory, for unit tests of what sits on the messaging seam: topic filters
with `+` and `#`, shared subscriptions (`$share/group/...`), retained messages, sessions
that are kept (subscriptions and queued messages) unless clean, the last will of a client
that vanishes, and a broker that goes away (`drop`) and refuses connections (`down`).
The tests that prove delivery use a real Mosquitto instead."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._seam import Connection, Message, MessagingError, Will

__all__ = ["MemoryBroker", "MemoryTransport", "matches"]


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching: `+` is one level, a final `#` any number (none included)."""
    want = topic_filter.split("/")
    have = topic.split("/")
    for index, part in enumerate(want):
        if part == "#":
            return index == len(want) - 1
        if index >= len(have) or (part != "+" and part != have[index]):
            return False
    return len(want) == len(have)


@dataclasses.dataclass(eq=False)
class _Session:
    client_id: str
    clean: bool
    filters: set[str] = dataclasses.field(default_factory=set)
    queue: asyncio.Queue[Message] = dataclasses.field(default_factory=asyncio.Queue)
    live: _MemoryConnection | None = None


class MemoryBroker:
    """One broker; `transport(client_id, ...)` gives each client its way in."""

    def __init__(self) -> None:
        self.sessions: dict[str, _Session] = {}
        self.retained: dict[str, bytes] = {}
        self.published: list[Message] = []
        """Every message the broker took, in order (wills included)."""
        self.down = False
        """True: connections are refused, as by a broker that is not running."""
        self.connects = 0
        self._turn = itertools.count()

    def transport(
        self, client_id: str, *, will: Will | None = None, clean_session: bool = False
    ) -> MemoryTransport:
        return MemoryTransport(self, client_id, will, clean_session)

    def drop(self) -> None:
        """Every connection breaks at once, as when the broker restarts: wills are sent."""
        for session in list(self.sessions.values()):
            if session.live is not None:
                session.live.lose()

    def route(self, message: Message, retain: bool = False) -> None:
        self.published.append(message)
        if retain:
            if message.payload:
                self.retained[message.topic] = message.payload
            else:
                self.retained.pop(message.topic, None)
        groups: dict[tuple[str, str], list[_Session]] = {}
        for session in self.sessions.values():
            for topic_filter in session.filters:
                if topic_filter.startswith("$share/"):
                    _, group, inner = topic_filter.split("/", 2)
                    if matches(inner, message.topic) and (session.live or not session.clean):
                        groups.setdefault((group, inner), []).append(session)
                elif matches(topic_filter, message.topic):
                    session.queue.put_nowait(message)
                    break
        for members in groups.values():
            connected = [s for s in members if s.live is not None] or members
            connected[next(self._turn) % len(connected)].queue.put_nowait(message)

    def _open(self, transport: MemoryTransport) -> _MemoryConnection:
        if self.down:
            raise MessagingError("connection refused: the broker is down")
        self.connects += 1
        session = self.sessions.get(transport.client_id)
        if session is not None and session.live is not None:
            session.live.lose(will=True)  # a client id connects once: the older one goes
        if session is None or transport.clean_session or session.clean:
            session = _Session(transport.client_id, transport.clean_session)
            self.sessions[transport.client_id] = session
        connection = _MemoryConnection(self, session, transport.will)
        session.live = connection
        return connection

    def _close(self, connection: _MemoryConnection, will: bool) -> None:
        session = connection.session
        if session.live is connection:
            session.live = None
            if session.clean:
                self.sessions.pop(session.client_id, None)
        if will and connection.will is not None:
            w = connection.will
            self.route(Message(w.topic, w.payload), retain=w.retain)


@dataclasses.dataclass(frozen=True, slots=True)
class MemoryTransport:
    broker: MemoryBroker
    client_id: str
    will: Will | None = None
    clean_session: bool = False

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        await asyncio.sleep(0)
        connection = self.broker._open(self)
        try:
            yield connection
        finally:
            # Leaving the block is a clean disconnect: no will, unless the link broke.
            if not connection.lost.is_set():
                connection.lost.set()
                self.broker._close(connection, will=False)


class _MemoryConnection:
    def __init__(self, broker: MemoryBroker, session: _Session, will: Will | None) -> None:
        self.broker = broker
        self.session = session
        self.will = will
        self.lost = asyncio.Event()

    def lose(self, will: bool = True) -> None:
        """The link breaks under this client (the broker then sends its will)."""
        if not self.lost.is_set():
            self.lost.set()
            self.broker._close(self, will=will)

    def _check(self) -> None:
        if self.lost.is_set():
            raise MessagingError("the connection is lost")

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's own PUBACK wait
    ) -> None:
        self._check()
        await asyncio.sleep(0)
        self._check()
        data = payload.encode() if isinstance(payload, str) else payload
        self.broker.route(Message(topic, data), retain=retain)

    async def subscribe(self, topic_filter: str, *, qos: int = 1) -> None:
        self._check()
        self.session.filters.add(topic_filter)
        inner = topic_filter.split("/", 2)[2] if topic_filter.startswith("$share/") else None
        for name, payload in self.broker.retained.items():
            if inner is None and matches(topic_filter, name):
                self.session.queue.put_nowait(Message(name, payload))

    async def messages(self) -> AsyncIterator[Message]:
        queue = self.session.queue
        while True:
            self._check()
            if not queue.empty():
                yield queue.get_nowait()
                continue
            getting = asyncio.ensure_future(queue.get())
            losing = asyncio.ensure_future(self.lost.wait())
            try:
                await asyncio.wait({getting, losing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                losing.cancel()
                if not getting.done():
                    getting.cancel()
            if getting.done() and not getting.cancelled():
                yield getting.result()
