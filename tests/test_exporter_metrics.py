"""The exporter's own health: prometheus-client's process, platform and GC series served by `serve` (not by
`scrape`), --web.disable-exporter-metrics, and kmem_exporter_build_info's version and revision."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from conftest import PROJECT, RunningExporter, fixture_flags, promtool_check_metrics, require_tool, scrape_fixture
from metrics_text import only_collectors, series_values, types

from kmem_exporter import __version__

FLAGS = (*fixture_flags("rhel7-fragmented"), *only_collectors("buddyinfo", "vmstat"))
PROCESS_FAMILIES = {"process_cpu_seconds_total": "counter", "process_resident_memory_bytes": "gauge",
                    "process_virtual_memory_bytes": "gauge", "process_start_time_seconds": "gauge",
                    "process_open_fds": "gauge", "process_max_fds": "gauge", "python_info": "gauge",
                    "python_gc_objects_collected_total": "counter", "python_gc_collections_total": "counter"}


def own_families(exposition: str) -> dict[str, str]:
    return {name: kind for name, kind in types(exposition).items() if name.startswith(("process_", "python_"))}


def test_serve_exposes_the_process_and_runtime_series(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*FLAGS)
    text = exporter.metrics()
    assert promtool_check_metrics(text) == ""
    assert own_families(text).items() >= PROCESS_FAMILIES.items()
    values = series_values(text)
    # The exporter's own process, not a process of --path.procfs (a fixture tree here).
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{exporter.process.pid}/status").read_text(),
                        re.M).group(1)) * 1024  # type: ignore[union-attr]
    assert 0.5 < values[("process_resident_memory_bytes", ())] / rss < 2
    assert values[("process_max_fds", ())] > 0
    python = [key for key in values if key[0] == "python_info"]
    assert python and dict(python[0][1])["implementation"] == sys.implementation.name.replace("cpython", "CPython")
    # Still the same in OpenMetrics (the _total suffix moves to the samples).
    status, headers, body = exporter.get("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and b"# TYPE process_cpu_seconds counter\n" in body


def test_the_flag_turns_them_off(exporter_factory: Callable[..., RunningExporter]) -> None:
    text = exporter_factory(*FLAGS, "--web.disable-exporter-metrics").metrics()
    assert own_families(text) == {}
    assert "kmem_collector_success" in text and "kmem_exporter_build_info" in text
    assert own_families(exporter_factory(*FLAGS, "--no-web.disable-exporter-metrics").metrics())


def test_scrape_describes_the_kernel_only() -> None:
    """`scrape` output can go to node_exporter's textfile collector, whose own process_* series it must not clash
    with; the one-shot process is not the exporter Prometheus watches anyway."""
    result = scrape_fixture("rhel7-fragmented", *only_collectors("buddyinfo"))
    assert result.returncode == 0, result.stderr
    assert own_families(result.stdout) == {}


def build_info(exposition: str) -> dict[str, str]:
    (labels,) = [dict(key[1]) for key in series_values(exposition) if key[0] == "kmem_exporter_build_info"]
    return labels


def test_build_info_in_a_checkout_gives_its_commit() -> None:
    git = require_tool("git")
    commit = subprocess.run([git, "-C", str(PROJECT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                            text=True, timeout=30, check=True).stdout.strip()
    result = scrape_fixture("rhel7-fragmented", *only_collectors("buddyinfo"))
    assert build_info(result.stdout) == {"version": __version__, "revision": commit}


def copy_package(tmp_path: Path) -> Path:
    """A copy of the package outside any checkout."""
    shutil.copytree(PROJECT / "exporter" / "kmem_exporter", tmp_path / "kmem_exporter",
                    ignore=shutil.ignore_patterns("__pycache__", "REVISION"))
    return tmp_path


def scrape_copy(root: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "kmem_exporter", "scrape", *fixture_flags("rhel7-fragmented"),
                             *only_collectors("buddyinfo")], capture_output=True, text=True, timeout=60, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_build_info_takes_the_revision_a_build_recorded(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    assert build_info(scrape_copy(root))["revision"] == "unknown"  # no checkout, nothing recorded
    (root / "kmem_exporter" / "REVISION").write_text("0123456789ab\n")
    assert build_info(scrape_copy(root)) == {"version": __version__, "revision": "0123456789ab"}
    for unusable in ("", "unknown\n", 'a"b\n', "x" * 100 + "\n"):  # never a label value to escape or a huge one
        (root / "kmem_exporter" / "REVISION").write_text(unusable)
        assert build_info(scrape_copy(root))["revision"] == "unknown"
