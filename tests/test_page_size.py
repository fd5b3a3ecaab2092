"""The kernel's page size: read from <procfs>/self/smaps (16K and 64K fixture trees), else this machine's own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import (FIXTURES, RunningExporter, copy_proc, fixture_flags, log_messages, promtool_check_metrics,
                      run_exporter, scrape_fixture_ok, scrape_ok)
from kmem_exporter.parsers.smaps import parse_kernel_page_size
from kmem_exporter.parsers.zoneinfo import parse_zoneinfo
from fuzzing import parse_or_none
from metrics_text import collector_success, only_collectors, value

FRAGMENTATION = only_collectors("buddyinfo", "zoneinfo")


def test_parse_kernel_page_size() -> None:
    assert parse_kernel_page_size("KernelPageSize:        4 kB") == 4096
    assert parse_kernel_page_size("KernelPageSize:       64 kB\n") == 65536


@pytest.mark.parametrize("line", ["KernelPageSize:        0 kB", "KernelPageSize: 4 MB", "KernelPageSize:", "4 kB"])
def test_malformed_line(line: str) -> None:
    assert parse_or_none(parse_kernel_page_size, line) is None


@given(st.text())
def test_fuzz_random_text(text: str) -> None:
    size = parse_or_none(parse_kernel_page_size, text)
    assert size is None or (size > 0 and size % 1024 == 0)


def test_64k_tree_exact_bytes() -> None:
    out = scrape_fixture_ok("arm64-64k-14orders", *FRAGMENTATION)
    assert value(out, "kmem_page_size_bytes") == 65536
    assert value(out, "kmem_zone_free_bytes", node="0", zone="Normal") == 53294 * 65536 == 3492675584
    assert value(out, "kmem_zone_managed_bytes", node="0", zone="Normal") == 195500 * 65536 == 12812288000
    assert value(out, "kmem_zone_watermark_bytes", node="0", zone="Normal", watermark="min") == 531 * 65536
    assert promtool_check_metrics(out) == ""


@pytest.mark.parametrize("host, page", [
    ("arm64-16k-12orders", 16384), ("arm64-64k-14orders", 65536), ("ppc64-64k-9orders", 65536),
])
def test_every_zone_of_the_16k_and_64k_trees(host: str, page: int) -> None:
    out = scrape_fixture_ok(host, *FRAGMENTATION)
    assert value(out, "kmem_page_size_bytes") == page
    zones = [z for z in parse_zoneinfo((FIXTURES / host / "proc" / "zoneinfo").read_text()) if z.populated]
    assert zones
    for zone in zones:
        assert value(out, "kmem_zone_free_bytes", node=zone.node, zone=zone.zone) == zone.free_pages * page


def test_slab_bytes_use_the_trees_page_size(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    shutil.copy(FIXTURES / "rhel7-fragmented" / "proc" / "slabinfo", proc / "slabinfo")
    shutil.copy(FIXTURES / "arm64-64k-14orders" / "proc" / "self" / "smaps", proc / "self" / "smaps")
    out = scrape_ok(f"--path.procfs={proc}", *only_collectors("slabinfo"))
    assert value(out, "kmem_slab_bytes", cache="nf_conntrack") == 382 * 65536  # see test_slabinfo.py


def test_smaps_without_the_line_falls_back_to_this_machine(tmp_path: Path) -> None:
    proc = copy_proc("arm64-64k-14orders", tmp_path)
    (proc / "self" / "smaps").write_text("")
    out = scrape_ok(f"--path.procfs={proc}", *FRAGMENTATION)
    assert value(out, "kmem_page_size_bytes") == os.sysconf("SC_PAGE_SIZE")


def test_malformed_smaps_fails_the_collectors_that_need_it(tmp_path: Path) -> None:
    proc = copy_proc("arm64-64k-14orders", tmp_path)
    smaps = proc / "self" / "smaps"
    smaps.write_text(smaps.read_text().replace("KernelPageSize:       64 kB", "KernelPageSize:       64"))
    result = run_exporter("scrape", f"--path.procfs={proc}", *only_collectors("buddyinfo", "zoneinfo", "pagetypeinfo"))
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"buddyinfo": 0, "zoneinfo": 0, "pagetypeinfo": 1}
    assert f"{smaps}: malformed: expected 'KernelPageSize: N kB' with N > 0, got 'KernelPageSize:       64\\n'" \
        in log_messages(result.stderr)
    assert promtool_check_metrics(result.stdout) == ""


def test_read_once_per_collector(tmp_path: Path, exporter_factory: Callable[..., RunningExporter]) -> None:
    """A running exporter keeps the page size it read first, even when the file changes."""
    proc = copy_proc("arm64-64k-14orders", tmp_path)
    flags = [f for f in fixture_flags("arm64-64k-14orders") if not f.startswith("--path.procfs=")]
    exporter = exporter_factory(f"--path.procfs={proc}", *flags, *FRAGMENTATION)
    assert value(exporter.metrics(), "kmem_page_size_bytes") == 65536
    smaps = proc / "self" / "smaps"
    smaps.write_text(smaps.read_text().replace("KernelPageSize:       64 kB", "KernelPageSize:       16 kB"))
    out = exporter.metrics()
    assert value(out, "kmem_page_size_bytes") == 65536
    assert value(out, "kmem_zone_free_bytes", node="0", zone="Normal") == 53294 * 65536
