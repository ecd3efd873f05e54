"""`make demo`: a broker, the relay on SQLite with a dry-run target, and three stores —
a POSLog store (with inventory counts), a MICROS restaurant and a Magestore shop — each
an agent beside a till that writes export files at a steady pace. Midway one store
loses its connection for a while and drains when it comes back. Ctrl-C stops it all.
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
from datetime import UTC, datetime
from pathlib import Path

from central.web import add_user

from .broker import Mosquitto, free_port
from .chaos import Process, _command
from .pos import MagestorePos, MicrosPos, PoslogPos, write_atomic

__all__ = ["main"]

STORES = (("0042", PoslogPos), ("0043", MicrosPos), ("0044", MagestorePos))
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


def _write_configs(workdir: Path, broker_url: str, web_port: int, *, cut: str = "") -> None:
    (workdir / "central.toml").write_text(
        f"""[central]
relay_id = "demo-relay"
data_dir = "{workdir / "relay"}"
[central.broker]
url = "{broker_url}"
protocol = "3.1.1"
[central.web]
listen = "127.0.0.1:{web_port}"
[central.intake]
gap_grace_seconds = 10
[[central.targets]]
name = "commerce-dry-run"
type = "http"
url = "http://commerce.invalid"
kinds = ["sale", "return", "void", "inventory"]
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
        url = f"mqtt://127.0.0.1:{free_port()}" if store == cut else broker_url
        inventory = ""
        if pos is PoslogPos:
            inventory = f"""[[agent.sources]]
name = "stock"
path = "{folder / "stock"}"
format = "inventory"
include = ["**/*.csv"]
settle_seconds = 0.5
"""
        (folder / "agent.toml").write_text(
            f"""[agent]
store = "{store}"
data_dir = "{folder / "data"}"
status_listen = "127.0.0.1:{free_port()}"
[agent.broker]
url = "{url}"
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
""",
            encoding="utf-8",
        )


def _stock(folder: Path, n: int) -> None:
    rows = ["sku,location,qty,counted_at"]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    for i, sku in enumerate(("4006381333931", "5012345678900", "7613036212345")):
        rows.append(f"{sku},SALESFLOOR,{(n * 7 + i * 13) % 40},{stamp}")
    write_atomic(folder / "stock", f"stock_{n:05d}.csv", ("\n".join(rows) + "\n").encode())


def run(
    workdir: Path, *, pace: float, outage_after: float, outage_for: float, embedded: bool = False
) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    broker = _broker(workdir, embedded=embedded)
    web_port = 8470 if _free(8470) else free_port()
    _write_configs(workdir, broker.url, web_port)
    relay = Process(
        [*_command("tillbridge-central"), "run", "--config", str(workdir / "central.toml")],
        workdir / "relay.out",
    )
    agents = {
        store: Process(
            [*_command("tillbridge-agent"), "run", "--config", str(workdir / store / "agent.toml")],
            workdir / store / "agent.out",
        )
        for store, _ in STORES
    }
    tills = {store: pos(store, workdir / store / "pos") for store, pos in STORES}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    password = secrets.token_urlsafe(9)
    add_user(workdir / "relay" / "web-users.json", "demo", "operator", password)
    broker.start()
    relay.start()
    for agent in agents.values():
        agent.start()
    print(f"Tillbridge demo running in {workdir}")
    print(f"  broker     {broker.url}")
    print(f"  dashboard  http://127.0.0.1:{web_port}/  sign in as demo / {password}")
    print(f"  relay log  {workdir / 'relay.out'}")
    print(f"  stores     {', '.join(f'{s} ({p.format})' for s, p in STORES)}")
    print("Press Ctrl-C to stop.", flush=True)
    started = time.monotonic()
    cut_state = "before"
    n = 0
    try:
        while not stop.is_set():
            n += 1
            for store, till in tills.items():
                till.write(5)
                del store
            if n % 10 == 1:
                _stock(workdir / "0042", n)
            elapsed = time.monotonic() - started
            if cut_state == "before" and elapsed > outage_after:
                agents["0043"].stop()
                _write_configs(workdir, broker.url, web_port, cut="0043")
                agents["0043"].start()
                cut_state = "cut"
                print("Store 0043 lost its connection; its records wait in its outbox.", flush=True)
            elif cut_state == "cut" and elapsed > outage_after + outage_for:
                agents["0043"].stop()
                _write_configs(workdir, broker.url, web_port)
                agents["0043"].start()
                cut_state = "after"
                print("Store 0043 is back online and drains its backlog.", flush=True)
            stop.wait(pace)
    except KeyboardInterrupt:
        pass
    finally:
        print("Stopping…", flush=True)
        for agent in agents.values():
            agent.stop()
        relay.stop()
        broker.stop()
        print(f"Stopped. Files, logs and the inbox stay in {workdir}.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--pace", type=float, default=2.0, help="Seconds between files.")
    parser.add_argument("--outage-after", type=float, default=60.0)
    parser.add_argument("--outage-for", type=float, default=45.0)
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
            embedded=args.embedded_broker,
        )


if __name__ == "__main__":
    main()
