"""The wire, as bytes: how a batch is written and read. Every program that puts a batch
on the broker or takes one off it goes through here (the outbox stores each record in
its wire form, the uplink frames and compresses them, the relay inflates and reads them).

A batch is gzip-compressed JSON (mtime 0): the envelope's head, then `"records"`, each
record written once by `record_json` when the outbox stores it and never parsed again
on the agent, then `"released"` when the batch carries any. Plain JSON is read too.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json

from ._envelope import SCHEMA_VERSION, Batch, EnvelopeError, Release, WireRecord
from ._limits import LimitError, Limits, inflate, loads

__all__ = [
    "MAX_SEQ",
    "decode_batch",
    "decode_batch_lenient",
    "encode_batch",
    "encode_records",
    "record_json",
]

MAX_SEQ = 2**63 - 1
"""The largest seq either program stores (a signed 64-bit integer)."""

DEFAULT_LEVEL = 6
"""gzip level of a batch when the sender names none (the uplink's is configured)."""


def record_json(
    seq: int,
    key: str,
    kind: str,
    correlation_id: str,
    occurred_at: str,
    source: str,
    body: str,
) -> str:
    """One record as it stands inside a batch (a `WireRecord`), from its JSON parts:
    `source` and `body` are JSON already, `occurred_at` is ISO 8601 with its offset."""
    return (
        f'{{"kind":{json.dumps(kind)},"seq":{seq},"key":{json.dumps(key)},'
        f'"correlation_id":{json.dumps(correlation_id)},'
        f'"occurred_at":{json.dumps(occurred_at)},"source":{source},"body":{body}}}'
    )


def encode_records(
    records: Iterable[bytes],
    *,
    store: str,
    agent_id: str,
    agent_version: str,
    batch_id: str,
    sent_at: datetime,
    released: Sequence[Release] = (),
    level: int = DEFAULT_LEVEL,
) -> bytes:
    """A batch, gzip-compressed, from records already in their wire form (`record_json`),
    joined as they are rather than parsed and written again."""
    head = json.dumps(
        {
            "schema": SCHEMA_VERSION,
            "store": store,
            "agent": {"id": agent_id, "version": agent_version},
            "batch_id": batch_id,
            "sent_at": sent_at.isoformat(),
        }
    )
    parts = [head[:-1].encode(), b',"records":[', b",".join(records), b"]"]
    if released:
        parts += [b',"released":', to_json([r.model_dump(mode="json") for r in released])]
    parts.append(b"}")
    return gzip.compress(b"".join(parts), compresslevel=level, mtime=0)


def _wire_form(record: WireRecord) -> bytes:
    return record_json(
        record.seq,
        record.key,
        record.kind,
        record.correlation_id,
        record.occurred_at.isoformat(),
        record.source.model_dump_json(),
        to_json(record.body).decode(),
    ).encode()


def encode_batch(batch: Batch, level: int = DEFAULT_LEVEL) -> bytes:
    """A `Batch` as the uplink sends it (the same bytes as `encode_records` of its records)."""
    return encode_records(
        (_wire_form(r) for r in batch.records),
        store=batch.store,
        agent_id=batch.agent.id,
        agent_version=batch.agent.version,
        batch_id=batch.batch_id,
        sent_at=batch.sent_at,
        released=batch.released,
        level=level,
    )


def _load(payload: bytes, limits: Limits) -> Any:
    try:
        return loads(inflate(payload, limits), limits)
    except LimitError as exc:
        raise EnvelopeError(str(exc)) from None


def decode_batch(payload: bytes, limits: Limits | None = None) -> Batch:
    """Inverse of `encode_batch`; plain JSON is accepted too. Raises EnvelopeError, also for
    a message over the byte limits; a number over the limits inside a record's body is kept
    as an `Oversize` for `check_value` to refuse that record alone."""
    obj = _load(payload, limits or Limits())
    try:
        return Batch.model_validate(obj)
    except ValidationError as exc:
        raise EnvelopeError(f"batch envelope is invalid: {_first_error(exc)}") from None


def decode_batch_lenient(
    payload: bytes, limits: Limits | None = None
) -> tuple[Batch, list[tuple[int, str, str]]]:
    """Like `decode_batch`, but a record that is no valid `WireRecord` is set aside as
    (seq, key, reason) when it names a usable seq, so that it can be answered as rejected
    instead of its whole batch being refused, and sent again, forever. The batch is still
    refused when its envelope is invalid or a broken record names no usable seq."""
    obj = _load(payload, limits or Limits())
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
