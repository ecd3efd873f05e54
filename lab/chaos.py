"""The fault-injection run: stores write POS files while a controller, on a seeded
schedule, SIGKILLs agents and relays, stops and restarts the broker (with and without
its persistence), cuts a store off, holds one store at a full buffer, and corrupts an
agent's database. At the end every POS transaction must be in the inbox exactly once
and posted exactly once to the recording target. Online orders flow the other way through
the same faults: queued at central for each store while the run goes on, each must land
in its store's import folder exactly once.

`python -m lab.chaos --stores 3 --transactions 3000 --seed 7` (`make chaos`);
prints `chaos: N sent, N received, N posted, 0 lost, 0 duplicated, K faults` and
`downlink: N queued, N written, 0 lost, 0 duplicated`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from .broker import Mosquitto, free_port
from .pos import PoslogPos, expected_totals
from .postgres import PostgresCluster

__all__ = ["ChaosResult", "Process", "program_command", "run_chaos"]

BIN = Path(sys.executable).parent


def program_command(name: str) -> list[str]:
    """How to start one of our programs: its installed script, else `python -m`."""
    found = BIN / name
    return [str(found)] if found.exists() else [sys.executable, "-m", name.replace("-", ".")]


@dataclass
class Process:
    """A child process that can be killed and started again with the same arguments."""

    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Set for the next starts (a faked clock); cleared by the fault that set it."""

    def start(self) -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            self.args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CI": "", **self.env},
        )
        handle.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 20) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class ChaosResult:
    sent: int
    received: int
    posted: int
    lost: int
    duplicated: int
    faults: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    """Stores whose totals in the inbox differ from what their tills wrote."""
    recon_differences: dict[str, int] = field(default_factory=dict)
    """Per store: lines where the relay's reconciliation of the day differs (or -1 when the
    store's end-of-day never arrived)."""
    seconds: float = 0.0
    orders_queued: int = 0
    orders_written: int = 0
    orders_lost: int = 0
    orders_duplicated: int = 0

    @property
    def summary(self) -> str:
        return (
            f"chaos: {self.sent} sent, {self.received} received, {self.posted} posted, "
            f"{self.lost} lost, {self.duplicated} duplicated, {len(self.faults)} faults\n"
            f"downlink: {self.orders_queued} queued, {self.orders_written} written, "
            f"{self.orders_lost} lost, {self.orders_duplicated} duplicated"
        )


class Stage:
    """Everything a run starts: broker, recording target, relay, agents, tills."""

    def __init__(
        self,
        workdir: Path,
        stores: int,
        seed: int,
        *,
        small_buffer: bool = True,
        postgres: bool = False,
        disks: bool = False,
    ) -> None:
        self.workdir = workdir
        self.small_buffer = small_buffer
        # The relay's inbox: a SQLite file, or a PostgreSQL server of the run's own that a
        # fault can crash mid-commit.
        self.postgres = PostgresCluster() if postgres else None
        self.disks: dict[str, Path] = {}
        """Stores whose data folder is a small file system of its own (a fault fills it)."""
        self._want_disks = disks
        self.extended = disks
        """The soak's extra faults: a disk that fills up, a clock that jumps."""
        self.min_free_mb: dict[str, int] = {}
        self.faketime = _faketime_library() if disks else None
        # Yesterday's business day, closed at midnight: the agents summarise it, so the
        # run ends with a reconciliation of every store's day.
        self.day = datetime.now(UTC).date() - timedelta(days=1)
        self.rng = random.Random(seed)
        self.broker = Mosquitto(workdir / "broker")
        self.target_port = free_port()
        self.target = Process(
            [
                sys.executable,
                "-m",
                "lab.target",
                "--db",
                str(workdir / "target.db"),
                "--port",
                str(self.target_port),
            ],
            workdir / "target.log",
        )
        self.inbox = workdir / "relay" / "inbox.db"
        self.inbox_url = self.postgres.url if self.postgres else f"sqlite:///{self.inbox}"
        self.relay = Process(
            [
                *program_command("tillbridge-central"),
                "run",
                "--config",
                str(workdir / "central.toml"),
            ],
            workdir / "relay.out",
        )
        self.stores = [f"{n:04d}" for n in range(101, 101 + stores)]
        self.tills = {
            s: PoslogPos(s, workdir / s / "pos", seed=seed + i, day=self.day)
            for i, s in enumerate(self.stores)
        }
        self.agents = {
            s: Process(
                [
                    *program_command("tillbridge-agent"),
                    "run",
                    "--config",
                    str(workdir / s / "agent.toml"),
                ],
                workdir / s / "agent.out",
            )
            for s in self.stores
        }
        self.expected: dict[str, Decimal] = {}
        self.orders: dict[str, set[str]] = {s: set() for s in self.stores}
        """Per store, the numbers of the online orders queued for it at central."""
        self.unqueued: list[tuple[str, str]] = []
        self._numbered = 0

    def queue_orders(self, count: int) -> None:
        """`count` new online orders for every store, queued at central the way an order
        source queues them. While the inbox is away (a fault) they are queued on a later
        round under the same numbers: queueing is idempotent by key."""
        for store in self.stores:
            for _ in range(count):
                self._numbered += 1
                self.unqueued.append((store, f"WEB-{store}-{self._numbered:05d}"))
        try:
            asyncio.run(self._queue_orders())
        except Exception as exc:  # noqa: BLE001 - the inbox may be mid-fault; next round
            print(f"orders wait for the next round ({type(exc).__name__})", flush=True)

    async def _queue_orders(self) -> None:
        from central.inbox import open_inbox
        from contract import OnlineOrder, order_key

        inbox = await open_inbox(self.inbox_url, relay_id="chaos-shop")
        try:
            while self.unqueued:
                store, number = self.unqueued[0]
                order = OnlineOrder.model_validate(
                    {
                        "source": "commercetools",
                        "target": "shop",
                        "order_id": f"id-{number}",
                        "order_number": number,
                        "version": 1,
                        "store": store,
                        "fulfilment": "pickup",
                        "created_at": datetime.now(UTC),
                        "currency": "EUR",
                        "taxed": "included",
                        "lines": [
                            {
                                "line_id": "1",
                                "sku": "4006381333931",
                                "quantity": "2",
                                "unit_price": "2.49",
                                "amount": "4.98",
                            }
                        ],
                        "tax_total": "0.80",
                        "total": "4.98",
                    }
                )
                await inbox.enqueue(store, "order", order_key(order), order.model_dump_json())
                self.orders[store].add(number)
                self.unqueued.pop(0)
        finally:
            await inbox.close()

    def orders_written(self) -> dict[str, list[str]]:
        """Per store, the order number of every order file its agent wrote."""
        found: dict[str, list[str]] = {}
        for store in self.stores:
            folder = self.workdir / store / "orders-in"
            files = folder.glob("*.json") if folder.is_dir() else iter(())
            found[store] = [json.loads(p.read_text())["order_number"] for p in files]
        return found

    def write(self, store: str, count: int) -> None:
        """One POS file, and the keys the agent must forward from it."""
        till = self.tills[store]
        path = till.write(count)
        self.expected.update(expected_totals(path.name, till.last, "poslog", store))

    def write_configs(self, *, broker_url: str | None = None, only: str | None = None) -> None:
        url = broker_url or self.broker.url
        (self.workdir / "central.toml").write_text(
            f"""[central]
relay_id = "chaos-relay"
data_dir = "{self.workdir / "relay"}"
[central.broker]
url = "{self.broker.url}"
[central.inbox]
url = "{self.inbox_url}"
[central.intake]
gap_grace_seconds = 3
[central.delivery]
poll_seconds = 0.2
lease_seconds = 20
[central.downlink]
resend_seconds = 3
poll_seconds = 0.3
[[central.targets]]
name = "recorder"
type = "http"
url = "http://127.0.0.1:{self.target_port}"
retry_min_seconds = 0.5
retry_max_seconds = 5
max_attempts = 1000
breaker_reset_seconds = 2
[central.stores.default]
currency = "EUR"
""",
            encoding="utf-8",
        )
        for index, store in enumerate(self.stores):
            if only is not None and store != only:
                continue
            # The first store runs with a small buffer, so an outage fills it.
            rows = 40 if index == 0 and self.small_buffer else 5_000_000
            folder = self.workdir / store
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "orders-in").mkdir(exist_ok=True)  # the POS's order import folder
            (folder / "agent.toml").write_text(
                f"""[agent]
store = "{store}"
end_of_day_close = "00:00"
data_dir = "{folder / "data"}"
status_listen = "127.0.0.1:{free_port()}"
[agent.broker]
url = "{url if only == store or only is None else self.broker.url}"
[[agent.sources]]
name = "till"
path = "{folder / "pos"}"
format = "poslog"
include = ["**/*.xml"]
settle_seconds = 0.3
rescan_seconds = 1
[agent.outbox]
max_rows = {rows}
min_free_disk_mb = {self.min_free_mb.get(store, 1)}
[agent.uplink]
ack_timeout_seconds = 4
reconnect_min_seconds = 0.2
reconnect_max_seconds = 2
heartbeat_seconds = 2
[agent.downlink]
enabled = true
writer = "file"
folder = "{folder / "orders-in"}"
format = "json"
retry_min_seconds = 0.5
retry_max_seconds = 5
""",
                encoding="utf-8",
            )

    def start(self) -> None:
        self.write_configs()
        if self._want_disks:
            for store in self.stores:
                data = self.workdir / store / "data"
                data.mkdir(parents=True, exist_ok=True)
                if _mount_small_disk(data):
                    self.disks[store] = data
        if self.faketime is not None:
            # Every agent runs on a clock a fault can move while it runs (read each second).
            for store in self.stores:
                clock = self.workdir / store / "clock"
                clock.write_text("+0\n")
                self.agents[store].env = {
                    "LD_PRELOAD": self.faketime,
                    "FAKETIME_TIMESTAMP_FILE": str(clock),
                    "FAKETIME_CACHE_DURATION": "1",
                    "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                }
        if self.postgres is not None:
            self.postgres.start()
        self.broker.start()
        self.target.start()
        self.relay.start()
        for agent in self.agents.values():
            agent.start()

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        self.relay.stop()
        self.target.stop()
        self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
        for data in self.disks.values():
            subprocess.run(["umount", "-l", str(data)], capture_output=True, check=False)

    # -- what the run checks -----------------------------------------------------------

    def reconcile(self, say: Callable[[str], None], *, timeout: float) -> dict[str, int]:
        """Restart each agent (its start summarises closed days), then reconcile every
        store's day until it shows no difference or `timeout` passes."""
        for agent in self.agents.values():
            agent.stop()
            agent.start()
        targets = {"recorder": ["sale", "return", "void", "inventory"]}
        deadline = time.monotonic() + timeout
        found: dict[str, int] = {}
        while True:
            found = asyncio.run(self._reconcile(targets))
            if not any(found.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        say(f"reconciliation of {self.day}: {found}")
        return found

    async def _reconcile(self, targets: dict[str, list[str]]) -> dict[str, int]:
        from central.inbox import open_inbox
        from central.recon import reconcile_day

        inbox = await open_inbox(self.inbox_url, relay_id="chaos-check")
        try:
            out = {}
            for store in self.stores:
                days = await reconcile_day(inbox, store, self.day, targets)
                closed = [d for d in days if d.revision is not None]
                out[store] = sum(d.differences for d in days) if closed else -1
            return out
        finally:
            await inbox.close()

    def _inbox_rows(self, sqlite_sql: str, postgres_sql: str) -> list[tuple[object, ...]]:
        if self.postgres is not None:
            import psycopg

            try:
                with psycopg.connect(self.inbox_url, connect_timeout=10) as conn:
                    return list(conn.execute(postgres_sql).fetchall())
            except psycopg.OperationalError:
                return []  # crashed by a fault and not back yet: look again later
        if not self.inbox.exists():
            return []
        with sqlite3.connect(f"file:{self.inbox}?mode=ro", uri=True, timeout=10) as db:
            return list(db.execute(sqlite_sql).fetchall())

    def inbox_totals(self) -> dict[str, Decimal]:
        """Key → total in the inbox (keys are unique there by construction: a POS
        transaction counted twice would show up as a key the tills never wrote)."""
        rows = self._inbox_rows(
            "SELECT key, json_extract(body, '$.total') FROM records "
            "WHERE kind IN ('sale', 'return', 'void', 'cancel')",
            "SELECT key, body->>'total' FROM records "
            "WHERE kind IN ('sale', 'return', 'void', 'cancel')",
        )
        return {str(key): Decimal(str(total)) for key, total in rows}

    def posted_keys(self) -> set[str]:
        sql = "SELECT key FROM records WHERE state = 'posted'"
        return {str(key) for (key,) in self._inbox_rows(sql, sql)}

    def target_puts(self) -> dict[str, int]:
        db = self.workdir / "target.db"
        if not db.exists():
            return {}
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            return dict(conn.execute("SELECT key, puts FROM records").fetchall())

    def target_stats(self) -> dict[str, int]:
        url = f"http://127.0.0.1:{self.target_port}/stats"
        with urllib.request.urlopen(url, timeout=5) as answer:
            stats: dict[str, int] = json.loads(answer.read())
        return stats


def _mount_small_disk(folder: Path, size: str = "512m") -> bool:
    """Give `folder` a small file system of its own, which a fault can fill; False where
    the machine does not allow it (not root, not Linux, mounts refused)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _faketime_library() -> str | None:
    """libfaketime, which lets a fault move one agent's clock (Debian's `faketime`)."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    return str(found[0]) if found else None


def _fill(folder: Path, leave: int = 256 * 1024) -> Path:
    """Fill `folder`'s file system until less than `leave` bytes are free."""
    filler = folder / "filler.bin"
    block = b"\0" * (1024 * 1024)
    with filler.open("wb") as handle:
        try:
            while shutil.disk_usage(folder).free > leave + len(block):
                handle.write(block)
                handle.flush()
            handle.write(block[: max(shutil.disk_usage(folder).free - leave, 0)])
            handle.flush()
        except OSError:
            pass  # full already
    return filler


def _damaged_count(data: Path) -> int:
    """Outbox files the agent has moved aside (each rebuild adds one)."""
    return sum(
        1
        for p in data.glob("outbox.db.damaged-*")
        if not p.name.endswith(("-wal", "-shm", "-journal"))
    )


def _faults(
    stage: Stage, *, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Callable[[], str]]:
    """Each kind of fault, applied to `stage` (or to a stand-in with the same parts, as the
    test that runs the schedule over many seeds does). A fault that cannot apply at this
    point of a run says so and changes nothing."""
    rng = stage.rng

    def kill_agent() -> str:
        store = rng.choice(stage.stores)
        stage.agents[store].kill()
        sleep(rng.uniform(0.2, 1.5))
        stage.agents[store].start()
        return f"SIGKILL agent {store}"

    def kill_relay() -> str:
        stage.relay.kill()
        sleep(rng.uniform(0.2, 2.0))
        stage.relay.start()
        return "SIGKILL relay"

    def restart_broker() -> str:
        stage.broker.stop()
        sleep(rng.uniform(0.5, 2.0))
        stage.broker.start()
        return "broker stopped and restarted"

    def broker_loses_everything() -> str:
        stage.broker.kill()
        persistence = stage.broker.persistence
        stage.broker.persistence = False
        for name in ("mosquitto.db",):
            (stage.broker.workdir / name).unlink(missing_ok=True)
        sleep(rng.uniform(0.5, 1.5))
        stage.broker.start()
        stage.broker.persistence = persistence
        return "broker killed, restarted without its persistence"

    def cut_store_off() -> str:
        store = rng.choice(stage.stores)
        stage.agents[store].stop()
        stage.write_configs(broker_url=f"mqtt://127.0.0.1:{free_port()}", only=store)
        stage.agents[store].start()
        stage.write(store, rng.randint(10, 30))
        sleep(rng.uniform(2, 4))
        stage.agents[store].stop()
        stage.write_configs(only=store)
        stage.agents[store].start()
        return f"store {store} cut off, then back"

    def fill_buffer() -> str:
        """The small-buffer store cut off while its till writes more than its buffer holds:
        intake pauses with files waiting in the POS folder, and resumes once it is back."""
        if not stage.small_buffer:
            return "full buffer skipped (no store runs with a small buffer)"
        store = stage.stores[0]
        log = stage.workdir / store / "data" / "logs" / "agent.log"
        stage.agents[store].stop()
        stage.write_configs(broker_url=f"mqtt://127.0.0.1:{free_port()}", only=store)
        stage.agents[store].start()
        for _ in range(3):  # 60 transactions for a buffer of 40
            stage.write(store, 20)
        full = False
        for _ in range(150):  # 15 s
            if log.exists() and "buffer full" in log.read_text(errors="replace"):
                full = True
                break
            sleep(0.1)
        stage.agents[store].stop()
        stage.write_configs(only=store)
        stage.agents[store].start()
        held = "held at a full buffer" if full else "buffer NOT reported full"
        return f"store {store} cut off past its buffer ({held}), then back"

    def corrupt(store: str) -> bool:
        """Kill the store's agent and wreck its outbox's header; start it again. False when
        there is no outbox to wreck (the agent has not made one yet, or is mid-rebuild)."""
        stage.agents[store].kill()
        db = stage.workdir / store / "data" / "outbox.db"
        if not db.exists():
            stage.agents[store].start()
            return False
        # Fold the WAL into the file first, or SQLite would read page 1 back from it
        # (mode=rw: never create a database that is not there).
        try:
            with sqlite3.connect(f"file:{db}?mode=rw", uri=True) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError:
            pass  # already damaged: its header is wrecked below all the same
        with db.open("r+b") as handle:
            handle.write(os.urandom(100))  # the header: SQLite no longer knows the file
        stage.agents[store].start()
        return True

    def moved_aside(store: str, before: int) -> bool:
        data = stage.workdir / store / "data"
        for _ in range(100):  # 10 s
            if _damaged_count(data) > before:
                return True
            sleep(0.1)
        return False

    def corrupt_database() -> str:
        # The store with the most files behind it and an outbox, so there is something to
        # lose; a run that has none yet skips the fault and says so.
        ready = [s for s in stage.stores if (stage.workdir / s / "data" / "outbox.db").exists()]
        if not ready:
            return "agent database corruption skipped (no agent has an outbox yet)"
        store = max(ready, key=lambda s: stage.tills[s].files)
        data = stage.workdir / store / "data"
        before = _damaged_count(data)
        if not corrupt(store):
            return f"agent {store} database corruption skipped (no outbox)"
        what = f"agent {store} database corrupted"
        what += " (moved aside and rebuilt)" if moved_aside(store, before) else " (NOT detected)"
        # A brownout strikes again: damage the rebuilt outbox while it may still be
        # re-reading the archive, and then, or instead, kill the agent mid-recovery.
        if rng.random() < 0.5:
            sleep(rng.uniform(0.0, 1.0))
            again = _damaged_count(data)
            if corrupt(store):
                what += ", corrupted again" + (
                    " (moved aside and rebuilt)" if moved_aside(store, again) else " (NOT detected)"
                )
        if rng.random() < 0.5:
            sleep(rng.uniform(0.0, 0.6))
            stage.agents[store].kill()
            sleep(rng.uniform(0.1, 0.5))
            stage.agents[store].start()
            what += ", then SIGKILLed mid-recovery"
        return what

    def crash_postgres() -> str:
        if stage.postgres is None:
            return "PostgreSQL crash skipped (the relay's inbox is SQLite)"
        stage.postgres.crash()
        sleep(rng.uniform(0.5, 3.0))
        stage.postgres.start()
        return "relay's PostgreSQL crashed mid-commit, then started again"

    def fill_disk() -> str:
        store = rng.choice(stage.stores)
        data = stage.disks.get(store)
        if data is None:
            # No file system of its own: the budget stands in, set above the free space.
            free = shutil.disk_usage(stage.workdir).free // (1024 * 1024)
            stage.agents[store].stop()
            stage.min_free_mb[store] = free + 1024
            stage.write_configs(only=store)
            stage.agents[store].start()
            sleep(rng.uniform(3, 8))
            stage.agents[store].stop()
            del stage.min_free_mb[store]
            stage.write_configs(only=store)
            stage.agents[store].start()
            return f"agent {store} saw its disk low (budget above the free space), then room"
        filler = _fill(data)
        held = rng.uniform(3, 8)
        sleep(held)
        filler.unlink(missing_ok=True)
        return f"agent {store} disk full for {held:.0f} s, then room again"

    def jump_clock() -> str:
        store = rng.choice(stage.stores)
        if stage.faketime is None:
            return "clock jump skipped (libfaketime is not installed: apt-get install faketime)"
        clock = stage.workdir / store / "clock"
        forward = rng.choice(["+2h", "+1d", "+26h"])
        back = rng.choice(["-3h", "-1d", "-20m"])
        clock.write_text(f"{forward}\n")
        sleep(rng.uniform(2, 5))
        clock.write_text(f"{back}\n")
        sleep(rng.uniform(2, 5))
        clock.write_text("+0\n")
        return f"agent {store} clock jumped {forward}, then {back}, then right again"

    kinds = {
        "kill_agent": kill_agent,
        "kill_relay": kill_relay,
        "restart_broker": restart_broker,
        "broker_loses_everything": broker_loses_everything,
        "cut_store_off": cut_store_off,
        "fill_buffer": fill_buffer,
        "corrupt_database": corrupt_database,
    }
    if stage.postgres is not None:
        kinds["crash_postgres"] = crash_postgres
    if stage.extended:
        kinds["fill_disk"] = fill_disk
        kinds["jump_clock"] = jump_clock
    return kinds


def schedule(rng: random.Random, kinds: list[str], faults: int) -> list[str]:
    """Every kind of fault at least once, then a seeded mix, in a seeded order: the order
    in which they strike."""
    plan = list(kinds)
    plan += [rng.choice(kinds) for _ in range(max(faults - len(plan), 0))]
    rng.shuffle(plan)
    return plan[::-1]  # taken from the end in earlier runs: the same seed, the same order


def apply_fault(kinds: dict[str, Callable[[], str]], kind: str) -> str:
    """Apply one fault; the run never dies by its own hand: a fault that fails to apply
    is noted as skipped, with why, and the run goes on."""
    try:
        return kinds[kind]()
    except Exception as exc:  # noqa: BLE001 - any failure of the injector itself
        return f"{kind} skipped ({type(exc).__name__}: {exc})"


class Journal:
    """The seed, the fault schedule and each fault's outcome, written beside the run after
    every step, so a failing run can be read and replayed with the same seed."""

    def __init__(
        self, path: Path, seed: int, stores: int, transactions: int, plan: list[str]
    ) -> None:
        self.path = path
        self.data: dict[str, object] = {
            "replay": f"python -m lab.chaos --stores {stores} --transactions {transactions} "
            f"--faults {len(plan)} --seed {seed}",
            "seed": seed,
            "stores": stores,
            "transactions": transactions,
            "plan": plan,
            "faults": [],
            "result": None,
        }
        self._write()

    def fault(self, kind: str, outcome: str, at: float) -> None:
        faults = self.data["faults"]
        assert isinstance(faults, list)
        faults.append({"at_seconds": round(at, 1), "kind": kind, "outcome": outcome})
        self._write()

    def finish(self, result: ChaosResult) -> None:
        self.data["result"] = {
            "summary": result.summary,
            "lost": result.lost,
            "duplicated": result.duplicated,
            "differences": result.differences,
            "reconciliation": result.recon_differences,
            "orders_lost": result.orders_lost,
            "orders_duplicated": result.orders_duplicated,
            "seconds": round(result.seconds, 1),
        }
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)


def run_chaos(
    workdir: Path,
    *,
    stores: int = 3,
    transactions: int = 600,
    seed: int = 7,
    faults: int = 8,
    settle_timeout: float = 180,
    postgres: bool = False,
    extended: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> ChaosResult:
    """Run the whole thing in `workdir`; returns the counts (the caller asserts).
    `postgres` puts the relay's inbox on a PostgreSQL server of the run's own, which a
    fault crashes; `extended` adds a disk that fills up and a clock that jumps."""
    started = time.monotonic()
    stage = Stage(workdir, stores, seed, postgres=postgres, disks=extended)
    kinds = _faults(stage)
    plan = schedule(stage.rng, list(kinds), faults)
    journal = Journal(workdir / "chaos-run.json", seed, stores, transactions, plan)
    done: list[str] = []

    def strike(kind: str) -> None:
        outcome = apply_fault(kinds, kind)
        done.append(outcome)
        journal.fault(kind, outcome, time.monotonic() - started)
        say(f"fault: {outcome}")

    try:
        stage.start()
        per_file = 20
        files = max(transactions // per_file // stores, 1)
        fault_every = max(files * stores // max(len(plan), 1), 1)
        written = 0
        todo = list(plan)
        order_every = max(files // 10, 1)  # about ten rounds of orders for each store
        for round_ in range(files):
            for store in stage.stores:
                stage.write(store, per_file)
                written += 1
                if written % fault_every == 0 and todo:
                    strike(todo.pop(0))
            if round_ % order_every == 0:
                stage.queue_orders(2)
            time.sleep(0.2)
        for left in todo:
            strike(left)
        stage.queue_orders(0)  # any the inbox could not take during a fault
        expected = set(stage.expected)
        say(f"written: {len(expected)} transactions; waiting for them to arrive and post")
        deadline = time.monotonic() + settle_timeout
        while time.monotonic() < deadline:
            for name, process in (("relay", stage.relay), ("target", stage.target)):
                if not process.alive:
                    process.start()
                    say(f"restarted {name}")
            if stage.unqueued:
                stage.queue_orders(0)
            landed = stage.orders_written()
            every_order = all(stage.orders[s] <= set(landed[s]) for s in stage.stores)
            if expected <= stage.posted_keys() and every_order:
                break
            time.sleep(1)
        first = stage.stores[0]
        agent_log = stage.workdir / first / "data" / "logs" / "agent.log"
        if "buffer full" in agent_log.read_text(encoding="utf-8", errors="replace"):
            done.append(f"store {first} held at a full buffer (files waited in the POS folder)")
        recon = stage.reconcile(say, timeout=min(settle_timeout, 90))
        totals = stage.inbox_totals()
        inbox = set(totals)
        puts = stage.target_puts()
        differences = sorted(
            store
            for store in stage.stores
            if sum((v for k, v in totals.items() if f":{store}:" in k), Decimal(0))
            != sum((v for k, v in stage.expected.items() if f":{store}:" in k), Decimal(0))
        )
        received = expected & inbox
        posted_once = {k for k in expected if puts.get(k) == 1}
        lost = len(expected - inbox) + len(expected - set(puts))
        duplicated = sum(1 for k in expected if puts.get(k, 0) > 1)
        duplicated += len(inbox - expected) + len(set(puts) - expected)
        result = ChaosResult(
            sent=len(expected),
            received=len(received),
            posted=len(posted_once),
            lost=lost,
            duplicated=duplicated,
            faults=done,
            differences=differences,
            recon_differences=recon,
            seconds=time.monotonic() - started,
        )
        landed = stage.orders_written()
        result.orders_queued = sum(len(v) for v in stage.orders.values())
        result.orders_written = sum(len(set(landed[s]) & stage.orders[s]) for s in stage.stores)
        result.orders_lost = result.orders_queued - result.orders_written
        result.orders_duplicated = sum(
            len(landed[s]) - len(set(landed[s])) + len(set(landed[s]) - stage.orders[s])
            for s in stage.stores
        )
        say(f"orders: {result.orders_written} of {result.orders_queued} written once")
        journal.finish(result)
        return result
    finally:
        stage.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.chaos", description=__doc__)
    parser.add_argument("--stores", type=int, default=3)
    parser.add_argument("--transactions", type=int, default=3000)
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--postgres", action="store_true", help="the relay's inbox on a PostgreSQL of its own"
    )
    parser.add_argument(
        "--extended", action="store_true", help="add a disk that fills up and a clock that jumps"
    )
    parser.add_argument(
        "--profile",
        choices=["soak"],
        default=None,
        help="soak: 1,000,000 transactions, 10 stores, 100 faults, PostgreSQL, extended faults",
    )
    args = parser.parse_args(argv)
    if args.profile == "soak":
        args.stores, args.transactions, args.faults = 10, 1_000_000, 100
        args.postgres = args.extended = True
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="tillbridge-chaos-"))).resolve()
    print(f"Working in {workdir}", flush=True)
    result = run_chaos(
        workdir,
        stores=args.stores,
        transactions=args.transactions,
        seed=args.seed,
        faults=args.faults,
        settle_timeout=600 if args.transactions <= 100_000 else 3600,
        postgres=args.postgres,
        extended=args.extended,
        say=lambda line: print(line, flush=True),
    )
    for fault in result.faults:
        print(f"  {fault}")
    print(result.summary + f" in {result.seconds:.0f} s")
    if result.differences:
        print(f"totals differ for stores {', '.join(result.differences)}")
    print(f"reconciliation: {result.recon_differences}")
    ok = result.lost == 0 and result.duplicated == 0 and not result.differences
    ok = ok and result.orders_lost == 0 and result.orders_duplicated == 0
    ok = ok and not any(result.recon_differences.values())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
