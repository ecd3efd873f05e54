"""The third-party `@labdigital/commercetools-mock` server (npm), started on a free
127.0.0.1 port for the commercetools integration tests. `make test` installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "ctmock"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the commercetools mock cannot run: {reason}")
    pytest.skip(f"the commercetools mock cannot run: {reason}")


@contextmanager
def commercetools_mock(project: str) -> Iterator[str]:
    """Yield the mock's base URL (API and auth on one host) while it runs."""
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed")
    if not (HERE / "node_modules" / "@labdigital" / "commercetools-mock").is_dir():
        _unavailable(f"run `npm ci` in {HERE} (make test does)")
    process = subprocess.Popen(
        [str(node), "server.mjs", "0", project],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("listening "):
            rest = process.stdout.read() if process.poll() is not None else ""
            raise RuntimeError(f"the commercetools mock did not start: {line} {rest[-2000:]}")
        yield f"http://127.0.0.1:{line.split()[1]}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
