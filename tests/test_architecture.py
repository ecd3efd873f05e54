"""ARCHITECTURE.md matches the tree: every path it names exists, and every package of
the repository has its room in the table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")


def _named_paths() -> set[str]:
    quoted = re.findall(r"`([^`\s]+)`", DOC)
    return {q for q in quoted if "/" in q and not q.startswith(("{", "$", "`")) and "*" not in q}


def test_every_path_it_names_exists() -> None:
    paths = _named_paths()
    assert len(paths) > 10  # the map names the folders and the seams it speaks of
    # A name in a room's row is inside that room's folder (`sources/` of `agent/`); a
    # module may be named without its `.py`.
    bases = [ROOT] + [ROOT / room for room in ("agent", "central", "common", "contract")]

    def exists(name: str) -> bool:
        name = name.rstrip("/")
        return any((b / name).exists() or (b / f"{name}.py").exists() for b in bases)

    assert sorted(p for p in paths if not exists(p)) == []


def test_every_package_has_its_room() -> None:
    rooms = set(re.findall(r"^\| `([a-z_]+)/` \|", DOC, flags=re.M))
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages <= rooms | {"tests"}
    assert "packaging" in rooms
