"""`make demo`'s moving parts without the processes: configs written once and never
again (an outage is the store's link cut, the agent running on), an item the SKU table
lacks, a business day that closes minutes after start, and the downlink's sandbox shop
and pickup counter: orders queued in the relay's inbox once each, written by the agent's
own file writer, handed over at the till in a POSLog the parser reads as fulfilments."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.parsers import ParseContext, parse_bytes
from agent.writers import DownItem
from agent.writers.file import FileWriter
from central.inbox import DownRow, open_inbox
from contract import Fulfillment, down_body_adapter
from lab.demo import PICKUP_STORE, TARGET, UNMAPPED, Demo, import_folder
from lab.link import Link
from lab.shop import SandboxShop
from tests.support.mosquitto import free_port


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def echo(c: socket.socket = conn) -> None:
                with c:
                    while data := c.recv(1024):
                        c.sendall(data)

            threading.Thread(target=echo, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def _answers(port: int) -> bool:
    """Whether a connection through the link carries bytes there and back."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"ping")
            return conn.recv(4) == b"ping"
    except OSError:
        return False


def test_a_cut_link_drops_and_refuses_connections_until_restored() -> None:
    server, port = _echo_server()
    link = Link(port)
    try:
        held = socket.create_connection(("127.0.0.1", link.port), timeout=2)
        held.sendall(b"ping")
        assert held.recv(4) == b"ping"
        link.cut()
        assert held.recv(4) == b""  # the open connection is dropped
        held.close()
        assert not _answers(link.port)
        link.restore()
        assert _answers(link.port)
    finally:
        link.close()
        server.close()


def test_the_demo_never_rewrites_a_config_and_gives_every_page_something(
    tmp_path: Path,
) -> None:
    demo = Demo(tmp_path, outage_after=0.0, outage_for=0.3, close_in=40, web_port=free_port())
    try:
        configs = {p: p.read_bytes() for p in tmp_path.rglob("*.toml")}
        assert len(configs) == 4  # the relay and three stores
        agent = tomllib.loads(configs[tmp_path / "0043" / "agent.toml"].decode())["agent"]
        assert agent["broker"]["url"] == demo.link.url  # the offline store goes by its link
        assert agent["status_listen"] == "127.0.0.1:0"
        close = datetime.strptime(agent["end_of_day_close"], "%H:%M").time()
        now = datetime.now(UTC)
        closes_at = datetime.combine(now.date(), close, UTC)
        if closes_at < now:
            closes_at += timedelta(days=1)
        assert closes_at - now <= timedelta(seconds=40 + 60)  # minutes after start, not hours
        demo.started = time.monotonic()
        said = demo.step()
        assert said is not None
        assert "0043 lost its connection" in said
        assert not demo.link.up
        time.sleep(0.4)
        said = demo.step()
        assert said is not None
        assert "0043 is back online" in said
        assert demo.link.up
        assert {p: p.read_bytes() for p in tmp_path.rglob("*.toml")} == configs
        # One sale of store 0044 sells the item the SKU table lacks.
        table = (tmp_path / "skus.csv").read_text()
        assert UNMAPPED[0] not in table
        skus = {
            line.sku
            for file in sorted((tmp_path / "0044" / "pos").iterdir())
            for record in parse_bytes(
                file.read_bytes(),
                "magestore",
                context=ParseContext(file_name=file.name, sha256="0" * 64, store="0044"),
            )
            for line in getattr(record, "lines", [])
        }
        assert UNMAPPED[0] in skus
        for sku in skus - {UNMAPPED[0]}:
            assert f"\n{sku}," in table
        # The tills trade on the day the close ends.
        assert all(t.till.business_date == demo.business_day() for t in demo.tills.values())
    finally:
        demo.link.close()


def _queued(url: str) -> list[DownRow]:
    async def read() -> list[DownRow]:
        inbox = await open_inbox(url, relay_id="test")
        try:
            due = await inbox.due_down(resend_after=timedelta(0))
        finally:
            await inbox.close()
        return due.get(PICKUP_STORE, [])

    return asyncio.run(read())


def test_the_sandbox_shop_queues_orders_the_till_hands_them_over(tmp_path: Path) -> None:
    demo = Demo(tmp_path, close_in=600, web_port=free_port())
    try:
        relay = tomllib.loads((tmp_path / "central.toml").read_text())["central"]
        (target,) = relay["targets"]
        assert (target["name"], target["dry_run"]) == (TARGET, True)
        assert "fulfillment" in target["kinds"]
        agent = tomllib.loads((tmp_path / PICKUP_STORE / "agent.toml").read_text())["agent"]
        assert Path(agent["downlink"]["folder"]) == import_folder(tmp_path)
        assert import_folder(tmp_path).is_dir()  # the POS's folder, there before the agent
        url = f"sqlite:///{tmp_path / 'relay' / 'inbox.db'}"
        assert demo.shop.queue() == 0  # no order yet
        demo.shop.place()
        assert demo.shop.queue() == 0  # the relay has not opened its inbox yet
        assert demo.shop.error == "the relay has not opened its inbox yet"
        (tmp_path / "relay").mkdir()
        assert _queued(url) == []  # opened, as the relay does at start
        demo.steps = 1
        assert demo.orders() == []  # a second order, both queued; none written yet
        demo.shop.place()
        assert demo.shop.queue() == 1
        rows = _queued(url)
        assert [down_body_adapter.validate_json(r.body).order_number for r in rows] == [
            f"SBX-{PICKUP_STORE}-0000{n}" for n in (1, 2, 3)
        ]
        again = SandboxShop(url, PICKUP_STORE, TARGET, name="demo")
        again.place()  # the first order again, under its number and key
        assert again.queue() == 1
        assert len(_queued(url)) == 3  # queued once each
        # The agent's own writer puts them into the import folder; the counter hands each
        # over once, the third customer taking only the first line.
        writer = FileWriter(import_folder(tmp_path), "json")
        for row in rows:
            body = down_body_adapter.validate_json(row.body)
            asyncio.run(writer.write(DownItem(seq=row.seq, key=row.key, body=body)))
        assert len(demo.orders()) == 3
        assert demo.orders() == []
        assert len(list((import_folder(tmp_path) / "imported").iterdir())) == 3
        said: dict[str, str] = {}
        for file in sorted((tmp_path / PICKUP_STORE / "pos").glob("*.xml")):
            context = ParseContext(file_name=file.name, sha256="0" * 64, store=PICKUP_STORE)
            for record in parse_bytes(file.read_bytes(), "poslog", context=context):
                if isinstance(record, Fulfillment):
                    said[record.order_number] = record.status
        assert said == {
            f"SBX-{PICKUP_STORE}-00001": "picked_up",
            f"SBX-{PICKUP_STORE}-00002": "picked_up",
            f"SBX-{PICKUP_STORE}-00003": "partially_picked_up",
        }
    finally:
        demo.link.close()
