"""`make demo`: a broker, the relay on SQLite with a dry-run target, and three stores —
a POSLog store (with inventory counts), a MICROS restaurant and a Magestore shop — each
an agent beside a till that writes export files at a steady pace. Every page has
something to show: one sale carries an item the SKU table lacks (Exceptions), the
business day closes a few minutes after start (Reconciliation), and midway one store's
link is cut for a while, its agent running on, and it drains when the link is back.

The downlink too: a sandbox shop takes pickup orders for the POSLog store and queues
them at the relay; the store's agent writes each into its POS import folder, the pickup
counter hands it over (every third customer takes only the first line and cancels the
rest), the till's POSLog says so, and the fulfilment goes up and is posted to the
dry-run target the order came from (Fleet "Orders down", Records). Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from agent.daemon import closed_before
from central.web import add_user

from .broker import Mosquitto, free_port
from .chaos import Process, program_command
from .link import Link
from .pos import ITEMS, MagestorePos, MicrosPos, PickupCounter, PoslogPos, write_atomic
from .shop import SandboxShop

__all__ = ["Demo", "main", "write_configs"]

STORES = (("0042", PoslogPos), ("0043", MicrosPos), ("0044", MagestorePos))
PICKUP_STORE = "0042"
"""The store the sandbox shop sends pickup orders to: its till writes POSLog, where
Xstore records a hand-over."""
TARGET = "commerce-dry-run"
ORDER_EVERY = 4
"""Steps between two orders the sandbox shop takes."""
SOURCE_EXTRA = {
    "micros": 'columns = { "tmed.101" = "cash", "tmed.201" = "card" }\n',
    "magestore": "",
    "poslog": "",
}


class EmbeddedBroker:
    """An in-process MQTT 3.1.1 broker (amqtt) for machines without Mosquitto."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"mqtt://127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        code = (
            "import asyncio\nfrom amqtt.broker import Broker\n"
            "async def main():\n"
            f"    b = Broker({{'listeners': {{'default': {{'type': 'tcp', "
            f"'bind': '127.0.0.1:{self.port}'}}}}, 'auth': {{'allow-anonymous': True}}}})\n"
            "    await b.start()\n    await asyncio.Event().wait()\n"
            "asyncio.run(main())\n"
        )
        self._process = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(2)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _broker(workdir: Path, *, embedded: bool = False) -> Mosquitto | EmbeddedBroker:
    if not embedded and (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        return Mosquitto(workdir / "broker")
    print("Mosquitto is not installed here; using the embedded amqtt broker (MQTT 3.1.1).")
    return EmbeddedBroker(free_port())


UNMAPPED = ("GW-100", "Gift wrapping", Decimal("3.50"))
"""Sold once by store 0044: the SKU table lacks it, so the record waits in Exceptions."""


TRADING_ENDS = timedelta(seconds=30)
"""How long before the close the tills start on the next business day."""


def sku_table() -> str:
    """Every item the tills sell, by its EAN and by the MICROS menu item number."""
    rows = ["pos_sku,sku"]
    for ean, _, _ in ITEMS:
        rows += [f"{ean},{ean}", f"{int(ean[-6:])},{ean}"]
    return "\n".join(rows) + "\n"


def close_time(now: datetime, seconds: float) -> str:
    """The store's end-of-day close `seconds` from `now`, at the next whole minute."""
    at = now + timedelta(seconds=seconds + 59)
    return f"{at:%H:%M}"


def write_configs(workdir: Path, broker_urls: dict[str, str], web_port: int, *, close: str) -> None:
    """The relay's and each store's config, written once: nothing rewrites them while the
    programs run (an outage is the store's link cut, not its config changed)."""
    (workdir / "skus.csv").write_text(sku_table(), encoding="utf-8")
    (workdir / "central.toml").write_text(
        f"""[central]
relay_id = "demo-relay"
data_dir = "{workdir / "relay"}"
[central.broker]
url = "{broker_urls["relay"]}"
protocol = "3.1.1"
[central.web]
listen = "127.0.0.1:{web_port}"
[central.intake]
gap_grace_seconds = 10
[central.downlink]
resend_seconds = 5
poll_seconds = 0.5
[central.routing]
sku_mode = "table"
sku_table = "{workdir / "skus.csv"}"
[[central.targets]]
name = "{TARGET}"
type = "http"
url = "http://commerce.invalid"
kinds = ["sale", "return", "void", "inventory", "fulfillment"]
dry_run = true
[central.stores.default]
country = "DE"
currency = "EUR"
""",
        encoding="utf-8",
    )
    for store, pos in STORES:
        folder = workdir / store
        folder.mkdir(parents=True, exist_ok=True)
        inventory = downlink = ""
        if pos is PoslogPos:
            inventory = f"""[[agent.sources]]
name = "stock"
path = "{folder / "stock"}"
format = "inventory"
include = ["**/*.csv"]
settle_seconds = 0.5
"""
        if store == PICKUP_STORE:
            import_folder(workdir).mkdir(exist_ok=True)  # the POS's, there before the agent
            downlink = f"""[agent.downlink]
enabled = true
writer = "file"
folder = "{import_folder(workdir)}"
format = "json"
retry_min_seconds = 0.5
retry_max_seconds = 5
"""
        (folder / "agent.toml").write_text(
            f"""[agent]
store = "{store}"
data_dir = "{folder / "data"}"
end_of_day_close = "{close}"
status_listen = "127.0.0.1:0"
[agent.broker]
url = "{broker_urls[store]}"
protocol = "3.1.1"
[[agent.sources]]
name = "till"
path = "{folder / "pos"}"
format = "{pos.format}"
include = ["**/*{pos.suffix}"]
settle_seconds = 0.5
{SOURCE_EXTRA[pos.format]}{inventory}[agent.uplink]
heartbeat_seconds = 5
reconnect_max_seconds = 5
{downlink}""",
            encoding="utf-8",
        )


def import_folder(workdir: Path) -> Path:
    """Where the pickup store's agent writes the online orders for its POS to import."""
    return workdir / PICKUP_STORE / "orders-in"


def _stock(folder: Path, n: int) -> None:
    rows = ["sku,location,qty,counted_at"]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    for i, sku in enumerate(("4006381333931", "5012345678900", "7613036212345")):
        rows.append(f"{sku},SALESFLOOR,{(n * 7 + i * 13) % 40},{stamp}")
    write_atomic(folder / "stock", f"stock_{n:05d}.csv", ("\n".join(rows) + "\n").encode())


class Demo:
    """The broker, the relay and three stores, stepped by `step()`: every step each till
    writes a file; one sale of store 0044 sells an item the SKU table lacks; the tills'
    business day closes `close_in` seconds after start (Reconciliation shows it); store
    0043's link is cut after `outage_after` seconds and restored `outage_for` later, its
    agent running all along with its backlog growing, then draining. Every `ORDER_EVERY`
    steps the sandbox shop takes a pickup order for store 0042; every step its pickup
    counter hands over what the agent has written into the import folder."""

    OFFLINE = "0043"

    def __init__(
        self,
        workdir: Path,
        *,
        outage_after: float = 60.0,
        outage_for: float = 45.0,
        close_in: float = 180.0,
        embedded: bool = False,
        web_port: int | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.outage_after, self.outage_for = outage_after, outage_for
        self.broker = _broker(workdir, embedded=embedded)
        self.link = Link(self.broker.port)
        self.web_port = web_port or (8470 if _free(8470) else free_port())
        self.close = close_time(datetime.now(UTC), close_in)
        urls = {store: self.broker.url for store, _ in STORES}
        urls["relay"] = self.broker.url
        urls[self.OFFLINE] = self.link.url
        write_configs(workdir, urls, self.web_port, close=self.close)
        self.relay = Process(
            [
                *program_command("tillbridge-central"),
                "run",
                "--config",
                str(workdir / "central.toml"),
            ],
            workdir / "relay.out",
        )
        self.agents = {
            store: Process(
                [
                    *program_command("tillbridge-agent"),
                    "run",
                    "--config",
                    str(workdir / store / "agent.toml"),
                ],
                workdir / store / "agent.out",
            )
            for store, _ in STORES
        }
        self.tills = {store: pos(store, workdir / store / "pos") for store, pos in STORES}
        self.tills["0044"].sell_once(*UNMAPPED)
        till = self.tills[PICKUP_STORE]
        assert isinstance(till, PoslogPos)
        self.shop = SandboxShop(
            f"sqlite:///{workdir / 'relay' / 'inbox.db'}", PICKUP_STORE, TARGET, name="demo"
        )
        self.counter = PickupCounter(till, import_folder(workdir))
        self.password = secrets.token_urlsafe(9)
        self.cut_state = "before"
        self.steps = 0
        self.started = 0.0

    def start(self) -> None:
        add_user(self.workdir / "relay" / "web-users.json", "demo", "operator", self.password)
        self.broker.start()
        self.relay.start()
        for agent in self.agents.values():
            agent.start()
        self.started = time.monotonic()

    def business_day(self) -> date:
        """The tills' trading day: the one the close has not ended yet. The tills move on
        to the next day `TRADING_ENDS` before the close, as a store stops selling before
        its end-of-day run, so every file of the closed day is in when it is summarised."""
        return closed_before(datetime.now(UTC) + TRADING_ENDS, self.close)

    def step(self) -> str | None:
        """Write one file per till (and a stock count now and then); cut or restore the
        offline store's link when its time comes, and say so."""
        self.steps += 1
        day = self.business_day()
        for till in self.tills.values():
            till.till.business_date = day
            till.write(5)
        if self.steps % 10 == 1:
            _stock(self.workdir / "0042", self.steps)
        self.orders()
        elapsed = time.monotonic() - self.started
        if self.cut_state == "before" and elapsed > self.outage_after:
            self.link.cut()
            self.cut_state = "cut"
            return f"Store {self.OFFLINE} lost its connection; its records wait in its outbox."
        if self.cut_state == "cut" and elapsed > self.outage_after + self.outage_for:
            self.link.restore()
            self.cut_state = "after"
            return f"Store {self.OFFLINE} is back online and drains its backlog."
        return None

    def orders(self) -> list[str]:
        """The sandbox shop takes an order every `ORDER_EVERY` steps and queues what it
        has; the counter hands over every order waiting in the import folder, every
        third one partly. Returns the numbers handed over now."""
        if self.steps % ORDER_EVERY == 1:
            self.shop.place()
        self.shop.queue()
        return self.counter.serve(partial=lambda number: int(number[-5:]) % 3 == 0)

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        self.relay.stop()
        self.link.close()
        self.broker.stop()


def run(
    workdir: Path,
    *,
    pace: float,
    outage_after: float,
    outage_for: float,
    close_in: float = 180.0,
    embedded: bool = False,
) -> None:
    demo = Demo(
        workdir,
        outage_after=outage_after,
        outage_for=outage_for,
        close_in=close_in,
        embedded=embedded,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    demo.start()
    print(f"Tillbridge demo running in {workdir}")
    print(f"  broker     {demo.broker.url}")
    print(f"  dashboard  http://127.0.0.1:{demo.web_port}/  sign in as demo / {demo.password}")
    print(f"  relay log  {workdir / 'relay.out'}")
    print(f"  stores     {', '.join(f'{s} ({p.format})' for s, p in STORES)}")
    print(f"  business day {demo.business_day()} closes at {demo.close} UTC: see Reconciliation")
    print(f"  one sale of store 0044 sells {UNMAPPED[0]}, not in the SKU table: see Exceptions")
    print(f"  a store    tillbridge-agent status --config {workdir / '0043' / 'agent.toml'}")
    print(f"  orders     store {PICKUP_STORE}'s POS import folder {import_folder(workdir)}")
    print(
        "             a sandbox shop takes pickup orders, the till hands them over (every"
        f' third partly), the fulfilment goes to {TARGET}: see Fleet "Orders down", Records'
    )
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop.is_set():
            said = demo.step()
            if said:
                print(said, flush=True)
            stop.wait(pace)
    except KeyboardInterrupt:
        pass
    finally:
        print("Stopping…", flush=True)
        demo.stop()
        print(f"Stopped. Files, logs and the inbox stay in {workdir}.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--pace", type=float, default=2.0, help="Seconds between files.")
    parser.add_argument("--outage-after", type=float, default=60.0)
    parser.add_argument("--outage-for", type=float, default=45.0)
    parser.add_argument(
        "--close-in", type=float, default=180.0, help="Seconds until the business day closes."
    )
    parser.add_argument(
        "--embedded-broker", action="store_true", help="Use amqtt even where Mosquitto is."
    )
    args = parser.parse_args(argv)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="tillbridge-demo-"))).resolve()
    with contextlib.suppress(KeyboardInterrupt):
        run(
            workdir,
            pace=args.pace,
            outage_after=args.outage_after,
            outage_for=args.outage_for,
            close_in=args.close_in,
            embedded=args.embedded_broker,
        )


if __name__ == "__main__":
    main()
