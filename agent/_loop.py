"""The one event-loop choice of every agent command: a selector loop on Windows, where
Python's default (the proactor) has no `add_reader` and the MQTT client cannot connect;
the platform's default elsewhere."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What `asyncio.Runner(loop_factory=...)` needs: None means the platform's default."""
    return asyncio.SelectorEventLoop if sys.platform == "win32" else None


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on the loop every agent command uses."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
