"""Commit before answer, proven with a SIGKILL: the real agent dies right after a
downlink batch is committed and before its answer is published. Central heard nothing
and sends the batch again; the restarted agent holds it already, answers, and the order
lands in the import folder once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import aiomqtt
import pytest

from agent._failpoints import ENV
from tests.agent.downlink.central import PREFIX, central, downlink_config
from tests.agent.downlink.orders import STORE, message, order
from tests.agent.test_daemon import BIN
from tests.support.mosquitto import Mosquitto
from tests.support.records import wait_for


def _start(config: Path, failpoints: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, ENV: failpoints}
    return subprocess.Popen(
        [str(BIN), "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _online(port: int) -> None:
    """Until the agent's retained heartbeat says online (it has subscribed by then)."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="status-watch") as client:
        await client.subscribe(f"{PREFIX}/{STORE}/status", qos=1)
        async with asyncio.timeout(30):
            async for heard in client.messages:
                if b'"online"' in bytes(heard.payload):  # type: ignore[arg-type]
                    return


def _rows(data_dir: Path) -> list[tuple[int, float | None]]:
    with sqlite3.connect(data_dir / "downlink.db") as db:
        return [(int(s), w) for s, w in db.execute("SELECT seq, written_at FROM downlink")]


@pytest.mark.timeout(120)
async def test_killed_between_commit_and_answer_the_resend_is_absorbed(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = downlink_config(tmp_path, mosquitto.url)
    folder = tmp_path / "import"
    folder.mkdir()
    process = _start(config, "downlink.committed")
    try:
        await _online(mosquitto.port)
        async with central(mosquitto.port) as hub:
            await hub.send(message(1, order("A")))
            code = await asyncio.to_thread(process.wait, 30)
            assert process.stderr is not None
            stderr = process.stderr.read().decode(errors="replace")
            assert code == -signal.SIGKILL, stderr[-2000:]
            assert "fail point downlink.committed reached" in stderr
            await asyncio.sleep(0.5)
            assert hub.acks == []  # central never heard the answer...
            assert [seq for seq, _ in _rows(tmp_path / "data")] == [1]  # ...the store has it

            process = _start(config)
            await _online(mosquitto.port)
            for _ in range(10):  # central resends until it hears an answer
                await hub.send(message(1, order("A")))
                try:
                    ack = await hub.ack_for({1}, timeout=3)
                    break
                except AssertionError:
                    continue
            else:
                raise AssertionError("the restarted agent never answered the resend")
            assert (ack.committed, ack.through) == ([1], 1)

            async def written() -> bool:
                return all(w is not None for _, w in _rows(tmp_path / "data"))

            await wait_for(written, timeout=20)
            await asyncio.sleep(0.5)
            assert sorted(p.name for p in folder.iterdir()) == ["order_ct-main_id-A_1.json"]
            assert len(_rows(tmp_path / "data")) == 1
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
