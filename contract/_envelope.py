"""The wire contract between agent and central: batches, acks, heartbeats, commands.

Everything that matters is in the payload, not in MQTT 5 properties, so the
protocol also works on MQTT 3.1.1 brokers. How a batch is written and read as bytes
(gzip-compressed JSON) is `_wire`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ._records import Record, SourceRef

__all__ = [
    "SCHEMA_VERSION",
    "Ack",
    "AgentInfo",
    "Batch",
    "Command",
    "EnvelopeError",
    "Heartbeat",
    "Rejection",
    "Release",
    "WireRecord",
    "parse_topic",
    "topic",
]

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "tillbridge/v1"

StoreId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class EnvelopeError(ValueError):
    """A payload that is not a valid envelope (bad gzip, JSON or shape)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentInfo(_Model):
    id: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=64)


class WireRecord(_Model):
    """One record in a batch: the canonical record plus its place in the store's stream."""

    kind: str
    seq: int = Field(ge=1, le=2**63 - 1, description="Per store, gap-free, assigned by the outbox.")
    key: str = Field(min_length=1, max_length=512)
    correlation_id: str = Field(min_length=1, max_length=128)
    occurred_at: AwareDatetime
    source: SourceRef
    body: dict[str, Any] = Field(description="The canonical record as JSON.")

    def record(self) -> Record:
        """Validate the body as a canonical record (raises pydantic's ValidationError)."""
        from ._records import record_adapter

        return record_adapter.validate_python(self.body)


class Release(_Model):
    """Seqs the store will never send, and why: `rebuilt` — they belonged to an outbox
    moved aside after damage, whose records were re-read from the archive under new seqs
    (nothing is missing); `purged` — the store acknowledged and purged them, so if central
    lacks them a person must look."""

    from_seq: int = Field(ge=1)
    to_seq: int = Field(ge=1)
    cause: Literal["rebuilt", "purged"]
    reason: str = Field(max_length=500)


class Batch(_Model):
    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    store: StoreId
    agent: AgentInfo
    batch_id: str = Field(min_length=1, max_length=128)
    sent_at: AwareDatetime
    records: list[WireRecord]
    released: list[Release] = Field(
        default_factory=list,
        max_length=100,
        description="Seqs central asked for that the store no longer holds, with the cause.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Rejection(_Model):
    seq: int
    key: str
    reason: str


class Ack(_Model):
    """Central → agent: these seqs are committed (new or duplicate) or were refused for good."""

    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    store: StoreId
    batch_id: str
    committed: list[int] = Field(default_factory=list, description="Seqs now durable centrally.")
    duplicates: list[int] = Field(default_factory=list, description="Seqs central already had.")
    rejected: list[Rejection] = Field(
        default_factory=list, description="Seqs kept in central's exception queue."
    )
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def settled(self) -> set[int]:
        """Every seq the agent may now let go of."""
        return {*self.committed, *self.duplicates, *(r.seq for r in self.rejected)}


class Heartbeat(_Model):
    """Agent → central on `{prefix}/{store}/status`, retained; the last will says offline."""

    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    store: StoreId
    state: Literal["online", "offline"]
    agent: AgentInfo | None = None
    at: AwareDatetime | None = None
    connected: bool = True
    backlog_rows: int = 0
    backlog_bytes: int = 0
    oldest_unacked_seconds: float | None = None
    last_ack_at: datetime | None = None
    files_pending: int = 0
    files_quarantined: int = 0
    budget: str = "ok"
    free_disk_bytes: int | None = None
    seq_floor_wanted: bool = Field(
        default=False,
        description="The agent's outbox was rebuilt and no last seq could be read from the "
        "damaged one: it numbers no record until central answers with a `floor` command.",
    )
    orders_waiting: int = Field(
        default=0,
        ge=0,
        description="Downlink messages (orders, cancellations) committed at the store and "
        "not yet written to the POS.",
    )
    orders_alert: int = Field(
        default=0,
        ge=0,
        description="Of those, how many have waited past the agent's alert time: the POS "
        "does not take them (the agent keeps trying).",
    )
    resync: list[Literal["customers", "items"]] = Field(
        default_factory=list,
        description="Reference data the store wants whole again (`tillbridge-agent resync`, or "
        "a reference store that was lost): central queues the current state of every "
        "entity that concerns the store once, and the store stops asking when it has it.",
    )
    resync_requested_at: AwareDatetime | None = Field(
        default=None, description="When the store asked: central answers each request once."
    )
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Command(_Model):
    """Central → agent on `{prefix}/{store}/command`. `resend` asks for seqs `from_seq` to
    `to_seq` again; `floor` answers a heartbeat's `seq_floor_wanted` with the highest seq
    central has of the store in `to_seq` (none when it has none)."""

    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    command: Literal["resend", "heartbeat", "diagnostics", "floor"]
    from_seq: int | None = Field(default=None, ge=1)
    to_seq: int | None = Field(default=None, ge=1)
    issued_at: AwareDatetime
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Channel = Literal["records", "ack", "status", "command", "down", "downack"]
"""Up: `records`, `status`, `downack`; down: `ack`, `command`, `down` (`_downlink`)."""


def topic(prefix: str, store: str, channel: Channel) -> str:
    """`{prefix}/{store}/{channel}`."""
    return f"{prefix.rstrip('/')}/{store}/{channel}"


def parse_topic(prefix: str, name: str) -> tuple[str, str]:
    """(store, channel) of a topic under `prefix`; EnvelopeError when it is not one of ours."""
    base = prefix.rstrip("/") + "/"
    if not name.startswith(base):
        raise EnvelopeError(f"topic {name!r} is not under {prefix!r}")
    rest = name[len(base) :].split("/")
    if len(rest) != 2 or not rest[0]:
        raise EnvelopeError(f"topic {name!r} is not {{prefix}}/{{store}}/{{channel}}")
    return rest[0], rest[1]
