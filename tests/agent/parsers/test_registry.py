"""Every parser together: each format is registered, auto-detection picks the right one
for every golden input, and no mutated input makes any parser fail other than by refusing."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import FORMATS
from agent.parsers import REGISTRY, ParseContext, ParseError, detect, parse_bytes

from .golden import TESTDATA, input_file

ALL = sorted(p for p in TESTDATA.iterdir() if p.is_dir())
GOOD = [c for c in ALL if (c / "expected.json").exists()]


def test_every_configurable_format_has_a_parser() -> None:
    assert set(REGISTRY) == {f for f in FORMATS if f != "auto"}


def _format(case: Path) -> str:
    name = case.name.split("_", 1)[0]
    return {"inventory": "inventory", "oms": "oms"}.get(name, name)


def _detected(case: Path) -> bool:
    """Cases whose context leaves the format to detection."""
    settings_file = case / "context.json"
    if not settings_file.exists():
        return True
    return json.loads(settings_file.read_text()).get("format", "auto") == "auto"


AUTO = [c for c in GOOD if _detected(c)]


@pytest.mark.parametrize("case", AUTO, ids=[c.name for c in AUTO])
def test_auto_detection_picks_the_right_parser(case: Path) -> None:
    head = input_file(case).read_bytes()[: 64 * 1024]
    assert detect(head).name == _format(case)


SEEDS = [(c.name, input_file(c).read_bytes()) for c in GOOD]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    fmt=st.sampled_from(sorted([*REGISTRY, "auto"])),
    where=st.integers(min_value=0, max_value=3000),
    junk=st.binary(max_size=16),
    cut=st.integers(min_value=1, max_value=6000),
)
def test_mutated_input_is_parsed_or_refused_by_every_parser(
    seed: tuple[str, bytes], fmt: str, where: int, junk: bytes, cut: int
) -> None:
    _, data = seed
    data = (data[:where] + junk + data[where + len(junk) :])[:cut]
    context = ParseContext(file_name="fuzz.dat", sha256="0" * 64, store="0042")
    with contextlib.suppress(ParseError):  # a refusal is fine; anything else fails the test
        parse_bytes(data, fmt, context=context)
