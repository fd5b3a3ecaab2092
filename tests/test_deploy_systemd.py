"""deploy/systemd/kmem-exporter.service: valid, hardened, and granting what the Privileges table lists
(docs/deployment.md)."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT, require_tool
from deploy_paths import privileges_table

UNIT = PROJECT / "deploy" / "systemd" / "kmem-exporter.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's installed command (systemd checks it exists)."""
    command = Path(sys.executable).parent / "kmem-exporter"
    assert command.exists()
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/kmem-exporter", str(command)))
    return copy


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    result = subprocess.run([analyze, "verify", str(runnable_copy(tmp_path))], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_exposure_is_low(tmp_path: Path) -> None:
    """systemd's own security review rates the unit's exposure at most 3.0 of 10 ("OK")."""
    analyze = require_tool("systemd-analyze")
    result = subprocess.run([analyze, "security", "--offline=yes", "--threshold=30", "--no-pager",
                             str(runnable_copy(tmp_path))], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_the_review_would_catch_a_weak_unit(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    weak = tmp_path / "weak.service"
    weak.write_text(f"[Service]\nExecStart={Path(sys.executable).parent / 'kmem-exporter'} serve\n")
    result = subprocess.run([analyze, "security", "--offline=yes", "--threshold=30", "--no-pager", str(weak)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0


def test_runs_unprivileged_with_the_documented_capabilities() -> None:
    service = unit()["Service"]
    assert service["DynamicUser"] == "yes"
    assert service["NoNewPrivileges"] == "yes"
    table = privileges_table((PROJECT / "docs" / "deployment.md").read_text())
    needed = set().union(*(row.capabilities for row in table.values()))
    assert set(service["AmbientCapabilities"].split()) == needed
    assert set(service["CapabilityBoundingSet"].split()) == needed


def test_reads_what_the_collectors_need() -> None:
    """The sandbox leaves /proc's system files, other processes and /dev/kmsg readable."""
    service = unit()["Service"]
    assert service["ProcSubset"] == "all"  # /proc/buddyinfo, /proc/slabinfo, ... are not per-process files
    assert service["ProtectProc"] == "default"  # other processes' /proc/<pid>/ns/net (netns)
    assert service["ProtectKernelLogs"] == "no"  # /dev/kmsg (kernel_log)
    assert "/dev/kmsg r" in service["DeviceAllow"]
    assert service["ExecStart"].split()[0].endswith("/kmem-exporter")


def test_bounds_hold_against_hostile_clients() -> None:
    """Descriptors far above the exporter's 512 connections; memory reclaimed under MemoryHigh before MemoryMax."""
    service = unit()["Service"]
    assert int(service["LimitNOFILE"]) >= 8192
    assert _mebibytes(service["MemoryHigh"]) < _mebibytes(service["MemoryMax"]) == 256


def _mebibytes(size: str) -> int:
    assert size.endswith("M"), size
    return int(size[:-1])
