"""`quarantine retry refused:…`: read one refused transaction again after a fix.

A refused record names its file (and the file's SHA-256), the place of the transaction in
it and the parser that refused it. The file's archived copy gives the transaction as the
POS wrote it; where the archive no longer holds it, the record's own fragment stands in
(card numbers masked and contact details blanked there). The transaction alone is read
with the source's current settings and the agent's current code. When it reads now, it is
written into its source folder as a file of its own, so the running agent takes it like
any export: its records keep the keys the POS's own identifiers give, so central keeps
one of each and closes the refused record's exception when the readable one arrives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, SourceSettings
from agent.outbox import SealError, refused_body
from agent.parsers import ParseContext, ParseError, parse_bytes
from agent.sources import archive_days, read_archived_file, safe_name
from contract import Limits, Refused, Transaction

__all__ = ["Reread", "reread_refused"]

_INDEX = re.compile(r"\[(\d+)\]")
_RAW = "\x00num:"  # marks a JSON number kept as written while one record is cut out
_RAW_BACK = re.compile(r'"\\u0000num:([^"\\]+)"')


@dataclasses.dataclass(frozen=True, slots=True)
class Reread:
    """What reading one refused transaction again gave."""

    key: str
    readable: bool
    said: str  # the record it reads as now, or why it is still refused
    origin: str  # "archive" (the file as the POS wrote it) or "fragment"
    written: Path | None = None  # the file put in the source folder for the agent to take


def reread_refused(config: AgentConfig, key: str, *, write: bool = True) -> Reread:
    """Read the refused transaction `key` again; when it reads, put it where its source
    takes it (unless `write` is false). KeyError when the outbox holds no such record,
    LookupError when no source reads its format, SealError when its archived file is
    sealed and does not open with the outbox key."""
    body = refused_body(config.outbox_path, key)
    if body is None:
        raise KeyError("no refused transaction with that key in the outbox")
    fmt = str(body.get("format") or "auto")
    source = _source_for(config, fmt)
    file_info = body.get("source") or {}
    # A file name only, and a safe one: what is written below goes into the source folder.
    name = safe_name(os.path.basename(str(file_info.get("file") or ""))) or "refused"
    place = str(body.get("place") or "")
    original = _archived(config, name, str(file_info.get("sha256") or ""))
    data = _cut(original, fmt, place) if original is not None else None
    origin = "archive"
    if data is None:
        data, origin = _from_fragment(body, fmt), "fragment"
    stem, dot, suffix = name.rpartition(".")
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    retry_name = f"{stem}.retry-{tag}.{suffix}" if dot else f"{name}.retry-{tag}"
    context = ParseContext(
        file_name=retry_name,
        sha256=hashlib.sha256(data).hexdigest(),
        store=config.store,
        timezone=config.zone,
        currency=config.currency,
        encoding=source.encoding,
        delimiter=source.delimiter,
        columns=dict(source.columns),
        limits=config.limits,
        transactions_per_file=config.limits.transactions_per_file,
        thousands=source.thousands,
    )
    try:
        items = parse_bytes(data, fmt, context=context)
    except ParseError as exc:
        return Reread(key, False, f"still refused at {exc.place or place}: {exc.reason}", origin)
    records = [item for item in items if isinstance(item, Transaction)]
    refusals = [item for item in items if isinstance(item, Refused)]
    if refusals or not records:
        said = (
            f"still refused at {refusals[0].place}: {refusals[0].reason}"
            if refusals
            else "it reads as nothing to forward (skipped: training, suspended or control)"
        )
        return Reread(key, False, said, origin)
    said = ", ".join(f"{r.kind} {r.total} {r.currency} ({r.key})" for r in records)
    written = _put(source.path, retry_name, data) if write else None
    return Reread(key, True, said, origin, written)


def _source_for(config: AgentConfig, fmt: str) -> SourceSettings:
    """The source whose files the parser `fmt` reads: one naming it, else one detecting."""
    for wanted in (fmt, "auto"):
        for source in config.sources:
            if source.format == wanted:
                return source
    raise LookupError(f"no source reads {fmt} files: add one with format = {fmt!r}")


def _archived(config: AgentConfig, name: str, sha256: str) -> bytes | None:
    """The archived copy of the file `name` as the POS wrote it (opened with the outbox key
    when sealed), newest day first, checked by its SHA-256. SealError when a copy of that
    name does not open and none other matches: the fragment must not stand in silently."""
    problem: SealError | None = None
    for _day, folder in reversed(archive_days(config.archive_dir)):
        for path in folder.rglob(Path(name).name):
            try:
                data = read_archived_file(path, config.outbox_key_file)
            except SealError as exc:
                problem = problem or exc
                continue
            if not sha256 or hashlib.sha256(data).hexdigest() == sha256:
                return data
    if problem is not None:
        raise problem
    return None


def _cut(data: bytes, fmt: str, place: str) -> bytes | None:
    """The one transaction at `place`, as a file of its own (None where it cannot be
    found: the fragment stands in then)."""
    found = _INDEX.search(place)
    if found is None:
        return None
    index = int(found.group(1))
    try:
        if fmt == "poslog":
            return _cut_poslog(data, index)
        if fmt in ("micros", "magestore"):
            return _cut_json(data, fmt, index)
    except (ParseError, ValueError, LookupError, TypeError):
        return None
    return None


def _cut_poslog(data: bytes, index: int) -> bytes | None:
    """`/POSLog/Transaction[index]` (1-based) as a file whose root is that Transaction."""
    from xml.etree import ElementTree as ET

    from agent.parsers._xml import longest_run
    from agent.parsers.poslog._stream import transactions

    longest = longest_run(Limits().string_chars)  # the file was read under these already
    for number, element in enumerate(transactions(io.BytesIO(data), longest), start=1):
        if number == index:
            return bytes(ET.tostring(element, encoding="utf-8", xml_declaration=True))
    return None


def _cut_json(data: bytes, fmt: str, index: int) -> bytes | None:
    """Guest check or order `index` (0-based) alone, with the numbers as written."""
    doc: Any = json.loads(data, parse_float=lambda text: _RAW + text)
    if fmt == "micros":
        head: dict[str, Any] = dict(doc) if isinstance(doc, dict) else {"guestChecks": doc}
        checks: list[Any] = head.pop("guestChecks")
        out: Any = {**head, "guestChecks": [checks[index]]}
    elif isinstance(doc, list):
        out = [doc[index]]
    elif isinstance(doc, dict) and "increment_id" not in doc:
        out = [doc["items"][index]]
    else:
        out = doc
    text = json.dumps(out, ensure_ascii=False, indent=1)
    return _RAW_BACK.sub(r"\1", text).encode("utf-8")


def _from_fragment(body: dict[str, Any], fmt: str) -> bytes:
    """The record's own fragment as a file: a POSLog Transaction is one already; a guest
    check needs its export around it."""
    fragment = str(body.get("fragment") or "")
    if fmt == "micros":
        return json.dumps(
            {"locRef": body.get("store"), "guestChecks": [json.loads(fragment)]},
            ensure_ascii=False,
        ).encode("utf-8")
    return fragment.encode("utf-8")


def _put(folder: Path, name: str, data: bytes) -> Path:
    """Write `data` as `folder/name`: under a `.tmp` name the watcher leaves alone, then
    renamed into place, so it is never taken half written."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    staging = folder / (name + ".tmp")
    staging.write_bytes(data)
    staging.replace(target)
    return target
