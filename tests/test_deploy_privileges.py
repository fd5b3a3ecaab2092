"""The Privileges table of docs/deployment.md, checked on this machine: the exporter runs as `nobody` with the
capabilities the table lists, then with each one taken away in turn, and each collector behaves as its row says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT, fixture_flags, is_root, promtool_check_metrics, require_tool
from deploy_paths import Privilege, privileges_table
from metrics_text import all_collectors, collector_success, series_values

from kmem_exporter.collectors import COLLECTORS

pytestmark = pytest.mark.live

NOBODY = "65534"


def table() -> dict[str, Privilege]:
    return privileges_table((PROJECT / "docs" / "deployment.md").read_text())


def scrape_as_nobody(capabilities: set[str]) -> tuple[str, str]:
    """`kmem-exporter scrape` on this host's files as nobody with exactly `capabilities`; (stdout, stderr)."""
    if not is_root():
        pytest.fail("this test needs root to change user and capabilities")
    setpriv = require_tool("setpriv")
    caps = ",".join(["-all"] + [f"+{c.removeprefix('CAP_').lower()}" for c in sorted(capabilities)])
    result = subprocess.run(
        [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", f"--inh-caps={caps}",
         f"--ambient-caps={caps}", f"--bounding-set={caps}", "--", sys.executable, "-m", "kmem_exporter", "scrape",
         *all_collectors()],
        capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert result.stdout, result.stderr
    return result.stdout, result.stderr


def dmesg_restricted() -> bool:
    return Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() == "1"


def expected_failures(without: str) -> set[str]:
    """Collectors whose row says they fail without the capability `without` (on this machine's settings)."""
    failing = set()
    for name, row in table().items():
        if without in row.capabilities and row.without.startswith("fails"):
            if "dmesg_restrict" in row.needs and without == "CAP_SYSLOG" and not dmesg_restricted():
                continue
            failing.add(name)
    return failing


def every_capability() -> list[str]:
    return sorted(set().union(*(row.capabilities for row in table().values())))


def test_every_collector_has_a_row() -> None:
    assert sorted(table()) == sorted(COLLECTORS)
    for name, row in table().items():
        assert row.capabilities or row.needs.startswith("nothing"), f"{name}: name a capability or say nothing"
        assert (row.without == "—") == (not row.capabilities), name


def test_the_listed_capabilities_are_enough(debugfs: Path) -> None:
    exposition, stderr = scrape_as_nobody(set(every_capability()))
    assert collector_success(exposition) == {name: 1.0 for name in COLLECTORS}, stderr
    # The capabilities, not the uid, open the root-only debugfs directory.
    sources = {dict(labels)["source"]: v for (name, labels), v in series_values(exposition).items()
               if name == "kmem_extfrag_source_info"}
    assert sources == {"debugfs": 1}, stderr
    assert promtool_check_metrics(exposition) == ""


@pytest.mark.parametrize("capability", every_capability())
def test_without_a_capability_collectors_do_what_the_table_says(capability: str) -> None:
    exposition, stderr = scrape_as_nobody(set(every_capability()) - {capability})
    success = collector_success(exposition)
    assert {name for name, ok in success.items() if ok != 1} == expected_failures(capability), stderr
    # A row that names a series for the degraded case (`name{label="value"}`) finds it in the exposition.
    for name, row in table().items():
        if capability not in row.capabilities:
            continue
        for series in re.findall(r"`(kmem_\w+(?:\{[^}`]*\})?)`", row.without):
            metric, _, labels = series.partition("{")
            inner = re.escape(labels.rstrip("}"))
            pattern = rf"^{metric}\{{[^}}]*{inner}[^}}]*\}} " if labels else rf"^{metric}[ {{]"
            assert re.search(pattern, exposition, re.M), f"{name}: `{series}` is not in the exposition"


def test_nothing_is_needed_for_the_others() -> None:
    """With no capability at all, the collectors whose row says `nothing` still succeed."""
    exposition, stderr = scrape_as_nobody(set())
    success = collector_success(exposition)
    assert {name for name, row in table().items() if not row.capabilities} <= {n for n, ok in success.items() if ok}, \
        stderr


def test_fixture_tree_needs_no_privilege() -> None:
    """The same user on a world-readable fixture tree: the failures above come from the kernel's modes."""
    if not is_root():
        pytest.fail("this test needs root to change user")
    result = subprocess.run([require_tool("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                             "--", sys.executable, "-m", "kmem_exporter", "scrape", *fixture_flags("live-6.18")],
                            capture_output=True, text=True, timeout=120, cwd=PROJECT)
    success = collector_success(result.stdout)
    assert success["buddyinfo"] == 1 and success["slabinfo"] == 1, result.stderr
