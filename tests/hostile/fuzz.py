"""Mutation fuzzing of the relay's intake and of every parser: real batches and real export
files, damaged byte by byte and token by token (flips, cuts, splices, huge numbers and
exponents, long strings and attributes, deep nesting, DTDs and entities, repeated keys, seqs
at the edge of 64 bits). The intake target feeds the decode-and-sort step; a parser target
parses the file as the agent does and holds each record to the relay's limits as the
outbox does. An input passes when it is taken or refused (EnvelopeError, ParseError)
within the time limit, and a parser never makes a record the relay would refuse; anything
else is a crash.

A short seeded run is part of `make test` (test_fuzz.py); `make fuzz` runs long, the runs
shared among the targets:

    python -m tests.hostile.fuzz --runs 1000000 --seed 1 --memory-mb 512

Targets are registered by name in TARGETS, each with its corpus in CORPORA; a target takes
bytes and returns nothing or raises the target's own refusal.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import random
import re
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from agent.parsers import ParseContext, ParseError, Skipped, bounded, parse_bytes
from agent.sources._intake import Records
from central.intake import examine
from contract import EnvelopeError, Limits, WireRecord, check_value
from tests.support.records import batch, return_body, sale_body, wire

__all__ = ["CORPORA", "TARGETS", "FuzzReport", "fuzz", "mutate", "seeds"]

LIMITS = Limits()
_TESTDATA = Path(__file__).resolve().parents[1] / "agent" / "parsers" / "testdata"
_REALWORLD = _TESTDATA.parent / "realworld"
_CORPUS_BYTES = 256 * 1024  # larger files make slow mutations and teach little more


def _intake(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):  # a refusal is an answer
        examine(data, LIMITS)


def _parsing(fmt: str) -> Callable[[bytes], None]:
    def check(data: bytes) -> None:
        context = ParseContext(file_name="fuzz.dat", store="0042")
        try:
            # As the watcher reads a file: a record for another store refuses the file.
            items = list(Records(iter(parse_bytes(data, fmt, context=context)), "0042"))
        except ParseError:
            return  # a refusal is an answer
        for item in items:
            if isinstance(item, Skipped):
                continue
            _record, text = bounded(item, item.model_dump_json(), LIMITS)
            over = check_value(json.loads(text), LIMITS, "body")
            if over is not None:
                raise AssertionError(f"the agent made a record the relay refuses: {over}")

    return check


def _files(fmt: str) -> Callable[[], list[bytes]]:
    """The golden and real-world inputs of a format, small ones, in a fixed order."""

    def corpus() -> list[bytes]:
        found = sorted(_TESTDATA.glob(f"{fmt}_*/input.*"))
        if fmt == "poslog":
            found += sorted(_REALWORLD.glob("*/input.xml"))
        return [p.read_bytes() for p in found if p.stat().st_size <= _CORPUS_BYTES]

    return corpus


_PARSERS = ("poslog", "micros", "magestore", "inventory", "oms")
TARGETS: dict[str, Callable[[bytes], None]] = {
    "intake": _intake,
    **{fmt: _parsing(fmt) for fmt in _PARSERS},
}


_SENT = datetime(2024, 5, 1, 18, 0, tzinfo=UTC)


def _fixed(seq: int, body: dict[str, Any]) -> WireRecord:
    """A wire record whose every field is fixed, so that a seed gives the same inputs."""
    return wire(seq, body).model_copy(update={"correlation_id": f"c-{seq}"})


def seeds() -> list[bytes]:
    """Batches as agents send them, the same on every call: gzip and plain, sales and
    returns, a card number in a description."""
    sale = sale_body("0042", "T1")
    sale["lines"][0]["description"] = "card 4111 1111 1111 1111"
    records = [
        _fixed(1, sale),
        _fixed(2, sale_body("0042", "T2", total="12.30")),
        _fixed(3, return_body("0042", "T3", "T2")),
    ]
    whole = batch("0042", records, batch_id="seed-1").model_copy(update={"sent_at": _SENT})
    one = batch("0042", records[:1], batch_id="seed-2").model_copy(update={"sent_at": _SENT})
    text = whole.model_dump_json(by_alias=True).encode()
    return [text, gzip.compress(text, mtime=0), one.model_dump_json().encode()]


CORPORA: dict[str, Callable[[], list[bytes]]] = {
    "intake": seeds,
    **{fmt: _files(fmt) for fmt in _PARSERS},
}


_TOKENS = [
    b"9" * 5000,
    b"1e-70000000",
    b'"1e-999999999999"',
    b"9223372036854775807",
    b"9223372036854775808",
    b"-1",
    b"NaN",
    b"Infinity",
    b"null",
    b"[" * 5000,
    b"{" * 5000,
    b'"' + b"a" * 70_000 + b'"',
    b'"4111.1111.1111.1111"',
    b'"\\u0000"',
    b'"\\ud800"',
    b"\xff\xfe",
    b'"password=' + b"x" * 5000 + b'"',
    b'{"a": 1, "a": 2}',
    b"1" * 50,
    b"\x1f\x8b",
    b'<!DOCTYPE x [<!ENTITY e "' + b"a" * 1000 + b'">]>',
    b"<!-- <a -->",
    b"&e;",
    b'<a b="' + b"x" * 2_000_000 + b'">',
    b"<![CDATA[" + b"x" * 70_000 + b"]]>",
    b"1,000.00",
    b"5_000.00",
    "５.００".encode(),
    b"-0.00",
    b'"locRef": "9999", "locRef": "0042",',
]


_GROWN = 256 * 1024
"""Past this size an input only shrinks or keeps its size: the mutations stay cheap."""
_NUMBER = re.compile(rb"\d+")


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to eight mutations of `data`; gzip inputs are sometimes mutated inside."""
    packed = data[:2] == b"\x1f\x8b"
    if packed and rng.random() < 0.7:
        data = gzip.decompress(data)
    else:
        packed = False
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not out:
            out += rng.choice(_TOKENS)
            continue
        at = rng.randrange(len(out))
        step = rng.randrange(8)
        if step == 0:  # flip a byte
            out[at] = rng.randrange(256)
        elif step == 1:  # cut a run
            del out[at : at + rng.randint(1, 64)]
        elif step == 2:  # insert a hostile token
            out[at:at] = rng.choice(_TOKENS)
        elif step == 3:  # replace a number with a hostile one
            number = _NUMBER.search(out, at) or _NUMBER.search(out)
            if number:
                out[number.start() : number.end()] = rng.choice(_TOKENS[:9])
        elif step == 4 and len(out) < _GROWN:  # splice a copy of another part
            start = rng.randrange(len(out))
            piece = bytes(out[start : start + rng.randint(1, 256)])
            out[at:at] = piece * rng.randint(1, 20)
        elif step == 5:  # truncate
            del out[at:]
        elif step == 6:  # swap a quote or bracket
            out[at] = rng.choice(b'"{}[],:\\')
        elif step == 7 and len(out) < _GROWN:  # a structure repeated: many records
            try:
                obj = json.loads(bytes(out))
            except (ValueError, RecursionError):
                out[at:at] = b"]" * rng.randint(1, 100)
                continue
            records = obj.get("records") if isinstance(obj, dict) else None
            if isinstance(records, list) and records:
                obj["records"] = records * rng.randint(2, 50)
                out = bytearray(json.dumps(obj).encode())
    result = bytes(out)
    return gzip.compress(result, mtime=0) if packed else result


@dataclass
class FuzzReport:
    runs: int = 0
    crashes: list[str] = field(default_factory=list)
    slowest_seconds: float = 0.0
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.runs / self.seconds if self.seconds else 0.0
        return (
            f"{self.runs} inputs, {len(self.crashes)} crashes, "
            f"slowest {self.slowest_seconds * 1000:.0f} ms, {rate:.0f}/s"
        )


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Hang


def _inputs(target: str, runs: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    corpus = CORPORA[target]()
    for _ in range(runs):
        yield mutate(rng.choice(corpus), rng)


def fuzz(target: str, runs: int, seed: int, *, hang_seconds: int = 10) -> FuzzReport:
    """Feed `runs` mutated inputs to `target`; every exception, and every input that takes
    longer than `hang_seconds`, is a crash (the first 20 are kept with their tracebacks)."""
    check = TARGETS[target]
    report = FuzzReport()
    use_alarm = hasattr(signal, "SIGALRM")
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, _alarm)
    began = time.perf_counter()
    try:
        for data in _inputs(target, runs, seed):
            started = time.perf_counter()
            try:
                if use_alarm:
                    signal.alarm(hang_seconds)
                check(data)
            except _Hang:
                report.crashes.append(f"hang over {hang_seconds} s: {data[:200]!r}")
            except Exception:  # noqa: BLE001 - every other exception is a finding
                if len(report.crashes) < 20:
                    report.crashes.append(f"{traceback.format_exc()}input: {data[:200]!r}")
                else:
                    report.crashes.append("…")
            finally:
                if use_alarm:
                    signal.alarm(0)
            report.slowest_seconds = max(report.slowest_seconds, time.perf_counter() - started)
            report.runs += 1
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, previous)
    report.seconds = time.perf_counter() - began
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--target", choices=sorted(TARGETS), action="append")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-mb", type=int, default=512)
    args = parser.parse_args(argv)
    if args.memory_mb and hasattr(resource, "RLIMIT_AS"):
        cap = args.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    failed = False
    targets = args.target or sorted(TARGETS)
    share, extra = divmod(args.runs, len(targets))  # --runs in all, shared among targets
    for index, target in enumerate(targets):
        report = fuzz(target, share + (1 if index < extra else 0), args.seed)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{target}: {report.line()}, peak memory {peak_mb:.0f} MB", flush=True)
        for crash in report.crashes[:20]:
            print(crash, file=sys.stderr)
        failed |= bool(report.crashes)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
