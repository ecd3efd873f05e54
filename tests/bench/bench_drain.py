"""Agent benchmarks: outbox intake beside raw SQLite inserts, and the drain of a large
backlog into a subscriber that commits and acks, beside `mosquitto_pub -l` (QoS 1) in
the same run; the agent's RSS during the drain and its CPU when idle.

`TILLBRIDGE_BENCH_BACKLOG` sets the backlog (default 1,000,000 records).
Each role runs in a process of its own: `python -m tests.bench.bench_drain <role> …`.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.run import Row, cpu_seconds
from tests.support.mosquitto import Mosquitto

STORE = "0042"
# Each record of a batch starts {"kind":…,"seq":N,"key":"…"; bodies carry no seq.
WIRE_ID = re.compile(rb'"seq":(\d+),"key":"((?:[^"\\]|\\.)*)"')
PREFIX = "tillbridge/v1"
FILL_CHUNK = 1000
IDLE_SETTLE_SECONDS = 3.0
IDLE_SECONDS = 20.0


def _sale(n: int) -> object:
    from contract import Transaction, make_key

    total = f"{n % 97 + 1}.{n % 100:02d}"
    return Transaction.model_validate(
        {
            "kind": "sale",
            "key": make_key("sale", STORE, str(n % 7 + 1), "2024-05-01", str(n)),
            "store": STORE,
            "business_date": "2024-05-01",
            "occurred_at": "2024-05-01T10:15:00+02:00",
            "source": {"file": f"POSLog_{n // 1000}.xml", "position": f"/POSLog/Transaction[{n}]"},
            "register": str(n % 7 + 1),
            "transaction_id": str(n),
            "currency": "EUR",
            "total": total,
            "lines": [
                {
                    "number": "1",
                    "sku": f"{100000 + n % 5000}",
                    "description": "Item",
                    "quantity": "1",
                    "unit_price": total,
                    "amount": total,
                }
            ],
            "tenders": [
                {"type": "card", "amount": total, "card": {"brand": "visa", "last4": "4242"}}
            ],
        }
    )


# -- roles (child processes) ---------------------------------------------------------------


async def _fill(data_dir: Path, count: int) -> float:
    """Fill an outbox through `ingest`, as files would; returns records/s."""
    from agent.config import OutboxSettings
    from agent.outbox import Outbox
    from agent.sources import IngestFile

    box = await Outbox.open(data_dir / "outbox.db", OutboxSettings(), key_file=data_dir / "k")
    elapsed = 0.0
    for first in range(1, count + 1, FILL_CHUNK):
        records = [_sale(n) for n in range(first, min(first + FILL_CHUNK, count + 1))]
        name = f"f{first}"
        started = time.perf_counter()  # the outbox's share only: records are made beforehand
        await box.ingest(IngestFile("pos", name, name, name, 1), iter(records))  # type: ignore[arg-type]
        elapsed += time.perf_counter() - started
    await box.close()
    return count / elapsed


async def _agent(data_dir: Path, port: int, idle_seconds: float) -> None:
    """Drain the outbox through the uplink; print drain seconds and idle CPU share."""
    from agent.config import AgentConfig
    from agent.outbox import Outbox
    from agent.uplink import Uplink
    from common.runtime import tune_gc
    from common.settings import BrokerSettings
    from contract import Heartbeat

    tune_gc()  # as the agent's daemon sets its collector up
    config = AgentConfig(
        store=STORE,
        agent_id="bench",
        data_dir=data_dir,
        broker=BrokerSettings(url=f"mqtt://127.0.0.1:{port}"),
    )
    if os.environ.get("TILLBRIDGE_BENCH_WINDOW"):  # to explore; the table uses the default
        config.uplink.window = int(os.environ["TILLBRIDGE_BENCH_WINDOW"])
    if os.environ.get("TILLBRIDGE_BENCH_BATCH"):
        config.uplink.batch_max_records = int(os.environ["TILLBRIDGE_BENCH_BATCH"])
    box = await Outbox.open(data_dir / "outbox.db", config.outbox, key_file=data_dir / "k")

    async def status(connected: bool) -> Heartbeat:
        return Heartbeat(store=STORE, state="online", connected=connected)

    uplink = Uplink(config, box, status)
    stop = asyncio.Event()
    started = time.perf_counter()
    cpu_start = time.process_time()
    task = asyncio.create_task(uplink.run(stop))
    while box.unacked_rows:
        await asyncio.sleep(0.05)
    drain = time.perf_counter() - started
    drain_cpu = time.process_time() - cpu_start
    # Idle is measured once the drain's last writes have settled (its final commits and
    # the database's checkpoint belong to the drain, not to an idle agent).
    await asyncio.sleep(IDLE_SETTLE_SECONDS)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(idle_seconds)
    idle = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    stop.set()
    await task
    await box.close()
    print(
        json.dumps({"drain_seconds": drain, "drain_cpu": drain_cpu, "idle_cpu": idle}), flush=True
    )


def _subscriber(port: int, db_path: Path) -> None:
    """Commit each batch's records to SQLite, then ack them, as central does."""
    import paho.mqtt.client as mqtt

    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS r (key TEXT PRIMARY KEY, seq INTEGER)")

    def on_message(client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        data = gzip.decompress(message.payload)
        head = json.loads(data[: data.index(b',"records":[')] + b"}")
        rows = [(key.decode(), int(seq)) for seq, key in WIRE_ID.findall(data)]
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO r VALUES (?, ?)", rows)
        db.execute("COMMIT")
        ack = {
            "schema": 1,
            "store": head["store"],
            "batch_id": head["batch_id"],
            "committed": [r[1] for r in rows],
        }
        client.publish(f"{PREFIX}/{head['store']}/ack", json.dumps(ack), qos=1)

    def on_connect(client: mqtt.Client, *_args: object) -> None:
        client.subscribe(f"{PREFIX}/+/records", qos=1)
        print("ready", flush=True)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    client.on_message = on_message
    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_forever()


# -- references ------------------------------------------------------------------------------


def raw_sqlite_rate(path: Path, count: int = 200_000, body: int = 600) -> float:
    """Rows/s of plain executemany inserts in 1,000-row transactions, WAL + synchronous=FULL."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, key TEXT UNIQUE, body BLOB)")
    payload = b"x" * body
    started = time.perf_counter()
    for first in range(0, count, FILL_CHUNK):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            (
                (n, f"sale:{STORE}:1:2024-05-01:{n}", payload)
                for n in range(first, first + FILL_CHUNK)
            ),
        )
        db.execute("COMMIT")
    rate = count / (time.perf_counter() - started)
    db.close()
    return rate


def mosquitto_pub_rate(port: int, count: int = 200_000) -> float:
    """Messages/s of the C client publishing lines at QoS 1 (`mosquitto_pub -l -q 1`)."""
    lines = b"".join(b'{"seq":%d,"k":"sale:0042:1:2024-05-01:%d"}\n' % (n, n) for n in range(count))
    started = time.perf_counter()
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-q",
            "1",
            "-l",
            "-t",
            f"{PREFIX}/ref/records",
            "-i",
            "bench-pub",
        ],
        input=lines,
        check=True,
    )
    return count / (time.perf_counter() - started)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run() -> list[Row]:
    backlog = int(os.environ.get("TILLBRIDGE_BENCH_BACKLOG", "1000000"))
    work = Path(tempfile.mkdtemp(prefix="tillbridge-bench-"))
    python = sys.executable
    rows: list[Row] = []

    raw = raw_sqlite_rate(work / "raw.db")
    fill = float(
        subprocess.run(
            [python, "-m", "tests.bench.bench_drain", "fill", str(work), str(backlog)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    rows.append(
        Row(
            "outbox ingest (records of files, one commit per file)",
            fill,
            "records/s",
            "raw SQLite insert, WAL + FULL (same run)",
            raw,
        )
    )

    broker = Mosquitto(work / "mosquitto", extra_config="max_queued_messages 0\n")
    broker.start()
    try:
        reference = mosquitto_pub_rate(broker.port)
        sub = subprocess.Popen(
            [
                python,
                "-m",
                "tests.bench.bench_drain",
                "subscriber",
                str(broker.port),
                str(work / "central.db"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert sub.stdout is not None
        sub.stdout.readline()  # "ready": subscribed
        agent = subprocess.Popen(
            [
                python,
                "-m",
                "tests.bench.bench_drain",
                "agent",
                str(work),
                str(broker.port),
                str(IDLE_SECONDS),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        peak = 0.0
        give_up = time.monotonic() + 1800
        while agent.poll() is None:
            peak = max(peak, _rss_mb(agent.pid))
            if time.monotonic() > give_up:
                agent.kill()
                sub.kill()
                raise RuntimeError("the drain did not finish within 30 minutes")
            time.sleep(0.2)
        assert agent.stdout is not None
        result = json.loads(agent.stdout.read().strip().splitlines()[-1])
        sub_cpu = cpu_seconds(sub.pid)
        sub.terminate()
        sub.wait(10)
    finally:
        broker.stop()
    with sqlite3.connect(work / "central.db") as db:
        delivered = db.execute("SELECT count(*) FROM r").fetchone()[0]
    assert delivered == backlog, f"{delivered} of {backlog} records arrived"
    rate = backlog / result["drain_seconds"]
    print(
        f"  drain: {result['drain_seconds']:.1f}s wall, agent CPU {result['drain_cpu']:.1f}s, "
        f"subscriber CPU {sub_cpu:.1f}s",
        flush=True,
    )
    rows.append(
        Row(
            f"drain of a {backlog:,}-record backlog, acked end to end",
            rate,
            "records/s",
            "mosquitto_pub -l, QoS 1 (same run)",
            reference,
            ">= 0.3 x reference",
            rate >= 0.3 * reference,
        )
    )
    rows.append(
        Row("agent RSS during the drain (peak)", peak, "MB", target="<= 80", met=peak <= 80)
    )
    rows.append(
        Row(
            f"agent CPU when idle (connected, empty outbox; {IDLE_SECONDS:.0f} s from "
            f"{IDLE_SETTLE_SECONDS:.0f} s after the drain)",
            result["idle_cpu"] * 100,
            "% of one core",
            target="<= 1",
            met=result["idle_cpu"] <= 0.01,
        )
    )
    return rows


def main(argv: list[str]) -> None:
    role = argv[1]
    if role == "fill":
        print(asyncio.run(_fill(Path(argv[2]), int(argv[3]))))
    elif role == "agent":
        asyncio.run(_agent(Path(argv[2]), int(argv[3]), float(argv[4])))
    elif role == "subscriber":
        _subscriber(int(argv[2]), Path(argv[3]))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv)
