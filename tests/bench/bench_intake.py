"""Relay intake throughput: records/s from 1,000 simulated stores through a real
Mosquitto into the inbox, on SQLite and on PostgreSQL, one relay versus two sharing
the stream. References from the same run: raw executemany inserts of comparable rows,
one transaction per batch, on each database.

TILLBRIDGE_BENCH_RECORDS sets records per batch (default 20), TILLBRIDGE_BENCH_BATCHES
batches per store (default 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg

from contract import DEFAULT_PREFIX, encode_batch
from tests.bench.run import Row, cpu_seconds
from tests.support import postgres
from tests.support.mosquitto import Mosquitto
from tests.support.records import batch, sale_body, wire

__all__ = ["run"]

STORES = 1000
RECORDS = int(os.environ.get("TILLBRIDGE_BENCH_RECORDS", "20"))
BATCHES = int(os.environ.get("TILLBRIDGE_BENCH_BATCHES", "1"))
BIN = Path(sys.executable).parent / "tillbridge-central"


def _payloads() -> list[tuple[str, bytes]]:
    out = []
    for n in range(BATCHES):
        for s in range(STORES):
            store = f"B{s:04d}"
            seqs = range(n * RECORDS + 1, (n + 1) * RECORDS + 1)
            records = [wire(q, sale_body(store, f"T{q}")) for q in seqs]
            out.append((store, encode_batch(batch(store, records))))
    return out


@contextlib.contextmanager
def _relays(
    workdir: Path, broker: Mosquitto, inbox_url: str, count: int
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    try:
        for n in range(count):
            data = workdir / f"relay{n}"
            data.mkdir(parents=True, exist_ok=True)
            config = data / "central.toml"
            shared = '\nshared_group = "relays"' if count > 1 else ""
            config.write_text(
                f'[central]\nrelay_id = "bench-{n}"\ndata_dir = "{data}"\n'
                f'[central.broker]\nurl = "{broker.url}"{shared}\n'
                f'[central.inbox]\nurl = "{inbox_url}"\n'
                '[central.logging]\nlevel = "warning"\n'
                # Intake alone: routing and delivery would compete for the same database.
                "[central.delivery]\nenabled = false\n[central.web]\nenabled = false\n"
            )
            procs.append(
                subprocess.Popen(
                    [str(BIN), "run", "--config", str(config)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        # A relay is ready once its subscription exists: probe with a status message.
        _wait_subscribed(broker, count)
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_subscribed(broker: Mosquitto, count: int, timeout: float = 120) -> None:
    """Until every relay has subscribed to the records, as the broker's own log says (the
    bench relays log at warning level, and a batch published before the subscription
    exists is never delivered): a fixed sleep was too short on a busy machine."""
    log = broker.workdir / "mosquitto.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if sum(1 for line in text.splitlines() if line.endswith("/+/records")) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{count} relay(s) did not subscribe within {timeout:.0f} s")


def _publish_and_wait(broker: Mosquitto, payloads: list[tuple[str, bytes]]) -> float:
    """Seconds from the first publish to the last ack."""
    done = threading.Event()
    acked = 0
    lock = threading.Lock()

    def on_ack(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal acked
        with lock:
            acked += 1
            if acked >= len(payloads):
                done.set()

    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-acks")
    listener.on_message = on_ack
    listener.connect("127.0.0.1", broker.port)
    listener.subscribe(f"{DEFAULT_PREFIX}/+/ack", qos=1)
    listener.loop_start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-stores")
    publisher.max_inflight_messages_set(1000)
    publisher.max_queued_messages_set(0)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    time.sleep(0.5)
    started = time.perf_counter()
    for store, payload in payloads:
        publisher.publish(f"{DEFAULT_PREFIX}/{store}/records", payload, qos=1)
    finished = done.wait(600)
    elapsed = time.perf_counter() - started
    publisher.loop_stop()
    listener.loop_stop()
    publisher.disconnect()
    listener.disconnect()
    if not finished:
        raise RuntimeError(f"only {acked} of {len(payloads)} batches were acknowledged")
    return elapsed


def _rows(store: str, n: int) -> list[tuple[object, ...]]:
    now = "2024-05-01T10:00:00+00:00"
    body = json.dumps(sale_body(store, "T1"))
    return [
        (f"sale:{store}:1:2024-05-01:T{q}", store, q, "sale", "c", now, None, "b", body, now, now)
        for q in range(1, n + 1)
    ]


def _raw_sqlite(path: Path, batches: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute(
        "CREATE TABLE r (key TEXT UNIQUE, store TEXT, seq INT, kind TEXT, cid TEXT, occurred TEXT, "
        "link TEXT, batch TEXT, body TEXT, received TEXT, updated TEXT)"
    )
    started = time.perf_counter()
    for n in range(batches):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO r VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _rows(f"B{n:04d}", RECORDS)
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return batches * RECORDS / elapsed


def _raw_postgres(url: str, batches: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE r (key TEXT UNIQUE, store TEXT, seq INT, kind TEXT, cid TEXT, "
            "occurred TIMESTAMPTZ, link TEXT, batch TEXT, body JSONB, received TIMESTAMPTZ, "
            "updated TIMESTAMPTZ)"
        )
        started = time.perf_counter()
        for n in range(batches):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO r VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    _rows(f"B{n:04d}", RECORDS),
                )
        elapsed = time.perf_counter() - started
    return batches * RECORDS / elapsed


def run() -> list[Row]:
    payloads = _payloads()
    total = len(payloads) * RECORDS
    rows: list[Row] = []
    busy: list[tuple[str, int, float, float]] = []  # share of a core each, CPU µs per record
    with tempfile.TemporaryDirectory(prefix="tb-bench-intake-") as tmp:
        work = Path(tmp)
        raw_sqlite = _raw_sqlite(work / "raw.db", len(payloads))
        name, pg_url = postgres.create_database("tb_bench")
        try:
            raw_pg = _raw_postgres(pg_url, len(payloads))
            setups = [
                ("SQLite", 1, f"sqlite:///{work / 'inbox.db'}", raw_sqlite),
                ("PostgreSQL", 1, None, raw_pg),
                ("PostgreSQL", 2, None, raw_pg),
            ]
            for label, relays, url, reference in setups:
                if url is None:
                    postgres.reset_database(pg_url)
                    url = pg_url
                broker = Mosquitto(
                    work / f"broker-{label}-{relays}", extra_config="log_type subscribe"
                )
                broker.start()
                try:
                    with _relays(work / f"{label}-{relays}", broker, url, relays) as procs:
                        cpu_before = sum(cpu_seconds(p.pid) for p in procs)
                        seconds = _publish_and_wait(broker, payloads)
                        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_before
                    print(
                        f"  {label}, {relays} relay(s): {seconds:.2f}s wall, relay CPU {cpu:.2f}s "
                        f"({cpu / seconds / relays:.0%} of a core each)",
                        flush=True,
                    )
                finally:
                    broker.stop()
                # On one PostgreSQL relay, intake keeps up with 0.7 of what the database
                # itself takes in transactions of the same size.
                gated = label == "PostgreSQL" and relays == 1
                rows.append(
                    Row(
                        figure=f"intake (delivery off), {STORES} stores, {label}, "
                        f"{relays} relay(s)",
                        value=total / seconds,
                        unit="records/s",
                        reference=f"raw {label} insert, {RECORDS}-row transactions",
                        reference_value=reference,
                        target=">= 0.7 x reference" if gated else "",
                        met=total / seconds >= 0.7 * reference if gated else None,
                    )
                )
                busy.append((label, relays, cpu / seconds / relays, cpu / total * 1e6))
        finally:
            postgres.drop_database(name)
    one, two = rows[1].value, rows[2].value
    for index, (label, relays, share, per_record) in enumerate(busy):
        rows.append(
            Row(
                figure=f"relay CPU during intake, {label}, {relays} relay(s), each",
                value=share * 100,
                unit="% of one core",
            )
        )
        # Decoding, validating, masking, the inbox transaction and the ack, all relays
        # together, per record; the reference is the raw insert's time per record.
        raw = rows[index].reference_value  # the intake row of the same setup
        rows.append(
            Row(
                figure=f"relay CPU per record, {label}, {relays} relay(s), all relays",
                value=per_record,
                unit="µs",
                reference=f"raw {label} insert, wall time per record",
                reference_value=1e6 / raw if raw else None,
                target="<= 60",
                met=per_record <= 60,
            )
        )
    rows.append(
        Row(
            figure="relay scaling on PostgreSQL: two relays over one (same run)",
            value=two / one,
            unit="×",
            target=">= 1.6",
            met=two / one >= 1.6,
        )
    )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
