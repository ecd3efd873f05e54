"""Builds the POSLog reader, and the card-number check and money arithmetic every record
passes, as compiled modules (mypyc) where a C compiler is at hand.

The compiled modules are the same Python files, type-checked and translated to C: without
a compiler (or with TILLBRIDGE_PURE_PYTHON=1) they run as plain Python, only slower. Set
TILLBRIDGE_REQUIRE_NATIVE=1 (as `make` does) to turn a failed build into an error instead.
Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

NATIVE = [
    "contract/_exact.py",
    "contract/_keys.py",
    "contract/_pan.py",
    "contract/_screen.py",
    "agent/parsers/poslog/_body.py",
    "agent/parsers/poslog/_read.py",
    "agent/parsers/poslog/_stream.py",
    "agent/parsers/poslog/_tender.py",
    "agent/parsers/poslog/parser.py",
]
GROUP = "tillbridge_native"  # the shared library the compiled modules load


def _required() -> bool:
    return os.environ.get("TILLBRIDGE_REQUIRE_NATIVE", "") not in ("", "0")


def _warn(message: str) -> None:
    print(f"tillbridge: {message}; the parsers run as plain Python (slower)", file=sys.stderr)


def _ext_modules() -> list[Any]:
    if os.environ.get("TILLBRIDGE_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        if _required():
            raise
        _warn("mypyc is not installed")
        return []
    try:
        return list(mypycify(NATIVE, opt_level="3", group_name=GROUP))
    except (Exception, SystemExit) as exc:  # a type error stops mypyc with SystemExit
        if _required():
            raise
        _warn(f"mypyc could not translate the modules ({exc})")
        return []


class OptionalBuildExt(build_ext):
    """All compiled modules or none: a module without its shared library cannot load."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if _required():
                raise
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            _warn(f"no C compiler could build the modules ({exc})")


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
