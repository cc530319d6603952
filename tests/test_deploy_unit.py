# The systemd unit (deploy/scopedns.service) as systemd itself reads it: `systemd-analyze
# verify` with the binary paths pointed at this checkout's scopedns must print nothing (it
# warns, exit 0, on a bad directive); and the unit keeps what docs/operations.md promises:
# restart on failure, takeover's capabilities, `scopedns release` after stop.
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "scopedns.service"
INSTALLED = "/usr/local/bin/scopedns"


def directives(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            found[key.strip()] = value.strip()
    return found


def test_unit_restarts_keeps_capabilities_and_releases() -> None:
    unit = directives(UNIT.read_text())
    assert unit["Restart"] == "on-failure"
    assert set(unit["CapabilityBoundingSet"].split()) == {
        "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE"}
    assert unit["ExecStopPost"] == f"{INSTALLED} release"
    assert unit["ExecStart"].startswith(f"{INSTALLED} serve")


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    scopedns = Path(sys.executable).with_name("scopedns")
    if not scopedns.exists():
        pytest.skip(f"no scopedns entry point next to {sys.executable} (pip install -e .)")
    copy = tmp_path / "scopedns.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED, str(scopedns)))
    proc = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0 and proc.stderr.strip() == "" and proc.stdout.strip() == "", (
        proc.stdout + proc.stderr)
