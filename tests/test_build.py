"""The PyInstaller spec still builds, and the frozen agent runs: `--version`, `self-test`,
`config check` and `parse`, through packaging/build-linux.sh (about 20 s)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.build
@pytest.mark.timeout(600)
def test_the_onedir_bundle_builds_and_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ROOT / "packaging" / "build-linux.sh"), str(tmp_path / "dist")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=590,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "tillbridge-agent 0.1.0" in out
    assert "✗" not in out
    assert "✓ outbox and polling watcher" in out
    assert "✓ service: agent.service; event loop" in out  # the service modules are bundled
    assert "POSLog reader compiled" in out  # the mypyc modules and their library are bundled
    assert '"key":"sale:0042:1:2024-05-01:7"' in out.replace(" ", "")
    bundle = tmp_path / "dist" / "tillbridge-agent"
    assert (bundle / "tillbridge-agent").is_file()
    assert not list(bundle.glob("*.pkg")), "onedir, not onefile"
