"""The fault controller never dies by its own hand: its schedule runs over many seeds
against a stand-in stage whose agents make, damage and rebuild real SQLite outboxes (or
have none yet), and every fault either applies or says why it was skipped."""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from lab.chaos import Journal, Stage, _damaged_count, _faults, apply_fault, schedule


@dataclass
class FakeProcess:
    started: int = 0
    alive: bool = True
    on_start: Any = None

    def start(self) -> None:
        self.started += 1
        self.alive = True
        if self.on_start is not None:
            self.on_start()

    def kill(self) -> None:
        self.alive = False

    def stop(self, timeout: float = 20) -> None:
        self.alive = False


@dataclass
class FakeTill:
    files: int = 0


@dataclass
class FakeBroker:
    workdir: Path
    persistence: bool = True
    running: bool = True

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def kill(self) -> None:
        self.running = False


@dataclass
class FakeStage:
    """Only the parts the faults touch. An agent's start does what the real one does to
    its outbox: create it (some stores only after their first file), or move a damaged
    one aside and create a new one."""

    workdir: Path
    rng: random.Random
    stores: list[str] = field(default_factory=lambda: ["0101", "0102", "0103"])
    configs: list[tuple[str | None, str | None]] = field(default_factory=list)

    extended: bool = False
    small_buffer: bool = True
    postgres: Any = None
    faketime: str | None = None
    disks: dict[str, Path] = field(default_factory=dict)
    min_free_mb: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.broker = FakeBroker(self.workdir / "broker")
        self.broker.workdir.mkdir(parents=True)
        self.relay = FakeProcess()
        self.tills = {s: FakeTill() for s in self.stores}
        self.agents = {s: FakeProcess(on_start=self._starter(s)) for s in self.stores}
        # A store whose agent has not taken a file yet has no outbox: the case that once
        # crashed the run.
        self.late = {s for s in self.stores if self.rng.random() < 0.5}

    def _starter(self, store: str) -> Any:
        def start() -> None:
            data = self.workdir / store / "data"
            data.mkdir(parents=True, exist_ok=True)
            db = data / "outbox.db"
            if store in self.late and self.tills[store].files == 0:
                return
            if db.exists():
                try:
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                    return
                except sqlite3.DatabaseError:
                    db.rename(data / f"outbox.db.damaged-{_damaged_count(data) + 1}")
            with sqlite3.connect(db) as conn:
                conn.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY)")
                conn.execute("INSERT INTO records VALUES (1)")

        return start

    def write_configs(self, *, broker_url: str | None = None, only: str | None = None) -> None:
        self.configs.append((broker_url, only))

    def write(self, store: str, count: int) -> None:
        self.tills[store].files += 1


@dataclass
class FakePostgres:
    crashes: int = 0
    running: bool = True

    def crash(self) -> None:
        self.crashes += 1
        self.running = False

    def start(self) -> None:
        self.running = True


SEEDS = range(50)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_fault_applies_or_says_why_at_any_seed(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    stage = FakeStage(tmp_path, rng)
    if seed % 2:  # the soak's faults too: a PostgreSQL inbox, disks, clocks
        stage.extended, stage.postgres = True, FakePostgres()
    for agent in stage.agents.values():
        agent.start()
    kinds = _faults(cast(Stage, stage), sleep=lambda seconds: None)
    plan = schedule(rng, list(kinds), 12)
    assert set(plan) == set(kinds)
    journal = Journal(tmp_path / "chaos-run.json", seed, 3, 100, plan)
    for n, kind in enumerate(plan):
        if rng.random() < 0.5:
            stage.write(rng.choice(stage.stores), 20)
        outcome = kinds[kind]()  # called bare: an injector that raises fails this test
        journal.fault(kind, outcome, float(n))
        if kind == "corrupt_database" and "skipped" not in outcome:
            assert "NOT detected" not in outcome, outcome
    assert all(agent.alive for agent in stage.agents.values())
    assert stage.broker.running
    assert stage.relay.alive
    if stage.postgres is not None:
        assert stage.postgres.running
        assert stage.postgres.crashes >= 1
        assert stage.min_free_mb == {}  # a disk fault always gives the room back


def test_the_schedule_and_outcomes_are_written_beside_the_run(tmp_path: Path) -> None:
    rng = random.Random(7)
    stage = FakeStage(tmp_path, rng)
    kinds = _faults(cast(Stage, stage), sleep=lambda seconds: None)
    plan = schedule(rng, list(kinds), 8)
    journal = Journal(tmp_path / "chaos-run.json", 7, 3, 100, plan)
    journal.fault(plan[0], apply_fault(kinds, plan[0]), 1.0)
    data = json.loads((tmp_path / "chaos-run.json").read_text())
    assert data["seed"] == 7
    assert data["plan"] == plan
    assert data["replay"].endswith("--faults 8 --seed 7")
    assert [f["kind"] for f in data["faults"]] == [plan[0]]
    # The same seed gives the same schedule: a failing run can be replayed.
    assert schedule(random.Random(7), list(kinds), 8) == schedule(random.Random(7), list(kinds), 8)
    assert schedule(random.Random(7), list(kinds), 8) != schedule(random.Random(8), list(kinds), 8)


def test_a_fault_that_cannot_apply_is_skipped_with_its_reason(tmp_path: Path) -> None:
    stage = FakeStage(tmp_path, random.Random(1), extended=True)
    stage.late = set(stage.stores)  # no agent has made an outbox yet
    kinds = _faults(cast(Stage, stage), sleep=lambda seconds: None)
    assert kinds["corrupt_database"]() == (
        "agent database corruption skipped (no agent has an outbox yet)"
    )
    assert kinds["jump_clock"]().startswith("clock jump skipped (libfaketime is not installed")
    assert "crash_postgres" not in kinds  # a SQLite inbox has no server to crash

    def broken() -> str:
        raise OSError("disk gone")

    assert apply_fault({"x": broken}, "x") == "x skipped (OSError: disk gone)"
