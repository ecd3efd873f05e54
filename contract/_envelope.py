"""The wire contract between agent and central: batches, acks, heartbeats, commands.

Everything that matters is in the payload, not in MQTT 5 properties, so the
protocol also works on MQTT 3.1.1 brokers. Batches travel gzip-compressed JSON.
"""

from __future__ import annotations

import gzip
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ._limits import LimitError, Limits, inflate, loads
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
    "decode_batch",
    "decode_batch_lenient",
    "encode_batch",
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


def topic(prefix: str, store: str, channel: Literal["records", "ack", "status", "command"]) -> str:
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


def encode_batch(batch: Batch) -> bytes:
    """gzip-compressed JSON of a batch."""
    raw = batch.model_dump_json(by_alias=True).encode()
    return gzip.compress(raw, compresslevel=6, mtime=0)


def decode_batch(payload: bytes, limits: Limits | None = None) -> Batch:
    """Inverse of `encode_batch`; plain JSON is accepted too. Raises EnvelopeError, also for
    a message over the byte limits; a number over the limits inside a record's body is kept
    as an `Oversize` for `check_value` to refuse that record alone."""
    limits = limits or Limits()
    try:
        obj = loads(inflate(payload, limits), limits)
    except LimitError as exc:
        raise EnvelopeError(str(exc)) from None
    try:
        return Batch.model_validate(obj)
    except ValidationError as exc:
        raise EnvelopeError(f"batch envelope is invalid: {_first_error(exc)}") from None


MAX_SEQ = 2**63 - 1
"""The largest seq either program stores (a signed 64-bit integer)."""


def decode_batch_lenient(
    payload: bytes, limits: Limits | None = None
) -> tuple[Batch, list[tuple[int, str, str]]]:
    """Like `decode_batch`, but a record that is no valid `WireRecord` is set aside as
    (seq, key, reason) when it names a usable seq, so that it can be answered as rejected
    instead of its whole batch being refused, and sent again, forever. The batch is still
    refused when its envelope is invalid or a broken record names no usable seq."""
    limits = limits or Limits()
    try:
        obj = loads(inflate(payload, limits), limits)
    except LimitError as exc:
        raise EnvelopeError(str(exc)) from None
    try:
        return Batch.model_validate(obj), []
    except ValidationError as exc:
        first = exc
    raw = obj.get("records") if isinstance(obj, dict) else None
    if not isinstance(raw, list):
        raise EnvelopeError(f"batch envelope is invalid: {_first_error(first)}") from None
    try:
        envelope = Batch.model_validate({**obj, "records": []})
    except ValidationError as exc:
        raise EnvelopeError(f"batch envelope is invalid: {_first_error(exc)}") from None
    kept: list[WireRecord] = []
    broken: list[tuple[int, str, str]] = []
    for index, item in enumerate(raw):
        try:
            kept.append(WireRecord.model_validate(item))
            continue
        except ValidationError as exc:
            problem = _first_error(exc)
        seq = item.get("seq") if isinstance(item, dict) else None
        if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
            raise EnvelopeError(f"batch envelope is invalid: records.{index}.{problem}") from None
        key = item.get("key")
        broken.append((seq, key[:512] if isinstance(key, str) else "", problem[:300]))
    return envelope.model_copy(update={"records": kept}), broken


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])
