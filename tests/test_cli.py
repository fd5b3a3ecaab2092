"""The command line: `scrape` exit status, `--version`, `--help`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES, promtool_check_metrics, run_exporter, scrape_fixture
from metrics_text import collector_success, only_collectors
from stuck_files import StuckTreeFactory, stuck_trees  # noqa: F401  (a fixture)
from kmem_exporter import __version__
from kmem_exporter.collectors import COLLECTORS

FOUR = only_collectors("buddyinfo", "vmstat", "sysctl", "kernel")


def test_scrape_exits_0_when_every_collector_succeeds() -> None:
    result = scrape_fixture("rhel7-fragmented", *FOUR)
    assert result.returncode == 0, result.stderr
    assert collector_success(result.stdout) == {"buddyinfo": 1, "vmstat": 1, "sysctl": 1, "kernel": 1}
    assert promtool_check_metrics(result.stdout) == ""
    assert result.stderr == ""


def test_scrape_exits_1_when_a_collector_fails() -> None:
    result = scrape_fixture("broken-vmstat-truncated", *FOUR)
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"buddyinfo": 1, "vmstat": 0, "sysctl": 1, "kernel": 1}
    assert promtool_check_metrics(result.stdout) == ""  # the rest is printed all the same


def test_scrape_exits_despite_a_read_stuck_in_the_kernel(stuck_trees: StuckTreeFactory) -> None:
    tree = stuck_trees(FIXTURES / "rhel7-fragmented", blocked={"proc/vmstat"})  # never released
    result = run_exporter("scrape", *tree.path_flags(), *FOUR, "--collector.timeout=500ms", timeout=60)
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"buddyinfo": 1, "vmstat": 0, "sysctl": 1, "kernel": 1}
    assert "collector=vmstat failed: timed out after 0.5s" in result.stderr
    assert tree.reads_started("proc/vmstat") == 1


def test_version() -> None:
    result = run_exporter("--version")
    assert result.returncode == 0
    assert result.stdout == f"kmem-exporter {__version__}\n"


def test_help_lists_every_collector_switch_and_option() -> None:
    result = run_exporter("--help")
    assert result.returncode == 0
    flat = " ".join(result.stdout.split())
    for name in COLLECTORS:
        assert f"--collector.{name}, --no-collector.{name}" in flat
    assert "--collector.vmstat.fields REGEX" in flat


def test_console_script_matches_module() -> None:
    script = Path(sys.executable).parent / "kmem-exporter"
    assert script.exists(), "the package is not installed (pip install -e .)"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout == f"kmem-exporter {__version__}\n"
