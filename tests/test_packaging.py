"""The service units: systemd itself accepts them (pointed at this checkout's programs),
and they ask for what the daemons provide (notify protocol, watchdog, clean stop)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parent.parent / "packaging" / "systemd"
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("program", ["tillbridge-agent", "tillbridge-central"])
def test_the_unit_is_valid_for_systemd(tmp_path: Path, program: str) -> None:
    text = (UNITS / f"{program}.service").read_text()
    for line in ("Type=notify", "NotifyAccess=main", "Restart=on-failure", "NoNewPrivileges=yes"):
        assert line in text.splitlines()
    assert any(line.startswith("WatchdogSec=") for line in text.splitlines())
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("systemd-analyze is needed to check the units (Debian package systemd)")
        pytest.skip("systemd-analyze is not on this machine")
    unit = tmp_path / f"{program}.service"
    unit.write_text(text.replace(f"/opt/{program}/{program}", str(BIN / program)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert program not in result.stderr, result.stderr
