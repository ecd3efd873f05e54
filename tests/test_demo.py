"""`make demo`'s moving parts without the processes: configs written once and never
again (an outage is the store's link cut, the agent running on), an item the SKU table
lacks, a business day that closes minutes after start."""

from __future__ import annotations

import socket
import threading
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.parsers import ParseContext, parse_bytes
from lab.demo import UNMAPPED, Demo
from lab.link import Link
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
