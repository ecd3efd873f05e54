"""A short seeded mutation fuzz of the relay's intake and of each parser (the long run is
`make fuzz`)."""

from __future__ import annotations

import random

import pytest

from tests.hostile.fuzz import CORPORA, fuzz, mutate, seeds


def test_mutations_are_seeded_and_varied() -> None:
    first = [mutate(s, random.Random(7)) for s in seeds()]
    assert first == [mutate(s, random.Random(7)) for s in seeds()]
    assert len({mutate(seeds()[0], random.Random(n)) for n in range(50)}) > 40


def test_the_intake_takes_or_refuses_every_mutated_batch() -> None:
    report = fuzz("intake", 1000, seed=17, hang_seconds=10)
    assert report.runs == 1000
    assert report.crashes == [], report.crashes[0]
    assert report.slowest_seconds < 10


@pytest.mark.parametrize("fmt", ["poslog", "micros", "magestore", "inventory", "oms"])
def test_each_parser_takes_or_refuses_every_mutated_file(fmt: str) -> None:
    assert len(CORPORA[fmt]()) >= 5  # real and golden files of the format
    report = fuzz(fmt, 300, seed=17, hang_seconds=10)
    assert report.runs == 300
    assert report.crashes == [], report.crashes[0]
    assert report.slowest_seconds < 10
