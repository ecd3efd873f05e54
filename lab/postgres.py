"""A PostgreSQL server of the fault run's own: a cluster made with initdb in a folder of its
own, on a free loopback port, that the run can crash (`pg_ctl stop -m immediate`, as a
power cut would: transactions in flight are lost, committed ones survive) and start again
without touching any other server on the machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .broker import free_port

__all__ = ["PostgresCluster", "postgres_bindir"]


def postgres_bindir() -> Path | None:
    """The newest installed server's bin folder (Debian's layout), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresCluster:
    """`start()` makes the cluster the first time and starts the server; `crash()` stops it
    at once; `url` is the run's database."""

    def __init__(self, *, port: int | None = None) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
        self.bindir = bindir
        self.port = port or free_port()
        # Its own folder: the server refuses to run as root, and its user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="tillbridge-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._owner = "postgres" if os.geteuid() == 0 else None
        if self._owner is not None:
            shutil.chown(self.root, self._owner, self._owner)

    @property
    def url(self) -> str:
        return f"postgresql://tillbridge@127.0.0.1:{self.port}/chaos"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._owner is not None:
            command = ["runuser", "-u", self._owner, "--", *command]
        return subprocess.run(command, capture_output=True, check=check, timeout=120)

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "tillbridge")
            created = True
        else:
            created = False
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        if created:
            port = str(self.port)
            self._run("createdb", "-h", "127.0.0.1", "-p", port, "-U", "tillbridge", "chaos")

    def crash(self) -> None:
        """Stop at once, as a crash would: no checkpoint, connections cut mid-commit."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
