"""A recording HTTP target for demos and fault runs: takes `PUT /records/{key}` (the
`http` connector), keeps each record once in SQLite, and counts every request, so a
run can prove each record was posted and how many times it was sent.

`python -m lab.target --port 8480 --db target.db` · `GET /stats` · `GET /records/{key}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import unquote

__all__ = ["RecordingTarget", "main"]


class RecordingTarget:
    """The server; its SQLite file survives restarts, so counts span the whole run."""

    def __init__(self, db: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._db = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, puts INTEGER NOT NULL, "
            "kind TEXT, store TEXT, total TEXT, body TEXT NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER)")
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._db.close()

    def stats(self) -> dict[str, Any]:
        (records, puts) = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(puts), 0) FROM records"
        ).fetchone()
        repeated = self._db.execute("SELECT COUNT(*) FROM records WHERE puts > 1").fetchone()[0]
        return {"records": records, "puts": puts, "repeated": repeated}

    def _put(self, key: str, body: bytes) -> int:
        try:
            data = json.loads(body)
            record = data["record"]
        except (ValueError, KeyError, TypeError):
            return 400
        self._db.execute(
            "INSERT INTO records (key, puts, kind, store, total, body) VALUES (?, 1, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET puts = puts + 1, body = excluded.body",
            (key, record.get("kind"), record.get("store"), record.get("total"), body.decode()),
        )
        return 200

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readline()
                if not request:
                    return
                method, target, _ = request.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                status, answer = self._answer(method, target, body)
                payload = json.dumps(answer).encode()
                head = (
                    f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n"
                )
                writer.write(head.encode() + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/stats":
            return 200, self.stats()
        if path.startswith("/records/"):
            key = unquote(path.removeprefix("/records/"))
            if method == "PUT":
                status = self._put(key, body)
                return status, {"stored": status == 200}
            if method == "GET":
                row = self._db.execute("SELECT puts, body FROM records WHERE key = ?", (key,))
                found = row.fetchone()
                if found is None:
                    return 404, {"error": "no such record"}
                return 200, {"puts": found[0], "body": json.loads(found[1])}
        return 404, {"error": f"no route {method} {path}"}


async def _run(db: Path, host: str, port: int) -> None:
    target = RecordingTarget(db, host=host, port=port)
    await target.start()
    print(f"Recording target on http://{host}:{target.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await target.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.target", description=__doc__)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8480)
    args = parser.parse_args(argv)
    asyncio.run(_run(args.db, args.host, args.port))


if __name__ == "__main__":
    main()
