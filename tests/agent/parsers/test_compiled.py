"""The compiled POSLog reader and card-number check (setup.py) give what the same files
give as plain Python: every golden case of every format, a generated file, and damaged
inputs, records and refusals alike."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.parsers import ParseError, compiled
from tests.agent.parsers.golden import cases, input_file, run_case
from tests.bench.bench_parsers import poslog_file

ROOT = Path(__file__).parents[3]

# Runs in a child process whose `agent` package is a copy holding only the sources.
_CHILD = """
import json, sys
from pathlib import Path
import agent.parsers
from tests.agent.parsers.test_compiled import outcomes
assert not agent.parsers.compiled(), agent.parsers.poslog.parser.__file__
json.dump(outcomes(Path(sys.argv[1])), sys.stdout)
"""


def _damaged(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 6)):
        if not data:
            break
        at = rng.randrange(len(data))
        step = rng.choice(("value", "value", "value", "flip", "cut", "insert", "truncate"))
        if step == "value":  # a number changed, the XML still well formed
            digits = [i for i, byte in enumerate(data) if 48 <= byte <= 57] or [at]
            data[rng.choice(digits)] = rng.choice(b"0123456789-.,")
        elif step == "flip":
            data[at] = rng.randrange(256)
        elif step == "cut":
            del data[at : at + rng.randint(1, 40)]
        elif step == "insert":
            data[at:at] = rng.choice((b"-", b"<", b"VoidFlag", b"4111111111111111", b"\xff", b" "))
        else:
            del data[at:]
    return bytes(data)


def write_inputs(folder: Path) -> None:
    """The inputs both sides parse: each golden case, the real-world corpus, a generated
    file, damaged POSLog."""
    for case in cases(""):
        shutil.copytree(case, folder / case.name)
    realworld = Path(__file__).parent / "realworld"
    for case in sorted(p for p in realworld.iterdir() if (p / "expected.json").exists()):
        shutil.copytree(case, folder / f"realworld_{case.name}")
    generated = folder / "generated"
    generated.mkdir()
    (generated / "input.xml").write_bytes(poslog_file(300))
    rng = random.Random(20241128)
    seeds = [input_file(case).read_bytes() for case in cases("poslog")]
    for number in range(200):
        damaged = folder / f"damaged_{number:03d}"
        damaged.mkdir()
        (damaged / "input.xml").write_bytes(_damaged(rng.choice(seeds), rng))


def outcomes(folder: Path) -> dict[str, Any]:
    """Each input's records and skipped transactions, or its refusal."""
    found: dict[str, Any] = {}
    for case in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            found[case.name] = run_case(case)
        except ParseError as exc:
            found[case.name] = f"refused: {exc}"
    return found


def test_compiled_and_plain_python_agree(tmp_path: Path) -> None:
    if not compiled():
        if os.environ.get("CI"):
            pytest.fail("the POSLog reader is not compiled: `make setup` compiles it")
        pytest.skip("nothing compiled in this checkout (run `make native`)")
    inputs = tmp_path / "inputs"
    write_inputs(inputs)
    plain = tmp_path / "plain"
    shutil.copytree(ROOT / "agent", plain / "agent", ignore=shutil.ignore_patterns("*.so", "*.pyd"))
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(inputs)],
        cwd=plain,  # `python -c` looks here first
        env={**os.environ, "PYTHONPATH": f"{plain}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    as_plain = json.loads(child.stdout)
    as_compiled = json.loads(json.dumps(outcomes(inputs)))
    assert as_plain.keys() == as_compiled.keys()
    refused = sum(isinstance(v, str) for v in as_compiled.values())
    assert 0 < refused < len(as_compiled)  # both records and refusals were compared
    for name, value in as_compiled.items():
        assert as_plain[name] == value, name
