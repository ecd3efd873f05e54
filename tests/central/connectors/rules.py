"""The documented rules a fake enforces, each one switchable.

A fake lists its rules as `RULES` (name → the documentation page or known issue it
follows) and checks `self.enforces(name)` where the rule applies. A probe per rule
(`Case.probes`) sends the request the platform refuses and asserts the refusal; the
contract suite runs every probe, and `test_rules.py` switches each rule off in turn to
show the suite then fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

Probe = Callable[[Any], None]
"""Given a fresh fake, send what its platform refuses and assert the refusal."""


class Ruled:
    """Mixin: `RULES` and the `enforces` switch."""

    RULES: Mapping[str, str] = {}

    def _init_rules(self, without: Iterable[str]) -> None:
        off = set(without)
        unknown = off - set(self.RULES)
        assert not unknown, f"no such rule: {sorted(unknown)}"
        self._off = off

    def enforces(self, rule: str) -> bool:
        assert rule in self.RULES, f"rule {rule} is not listed in RULES"
        return rule not in self._off
