"""Kernel files that are not what they should be (a FIFO, a device, huge, endless, stuck) fail their collector alone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable

from conftest import FIXTURES, RunningExporter, copy_proc, run_exporter
from metrics_text import collector_success, only_collectors, value
from stuck_files import StuckTreeFactory, stuck_trees  # noqa: F401  (a fixture)

FRAGMENTED = FIXTURES / "rhel7-fragmented"
SLAB = only_collectors("buddyinfo", "vmstat", "slabinfo", "conntrack")
DEFAULT_LIMIT = "larger than the 33554432-byte limit (--collector.max-file-size)"


def tree_flags(proc: Path) -> list[str]:
    return [f"--path.procfs={proc}", f"--path.sysfs={FRAGMENTED / 'sys'}"]


def peak_rss_mib(exporter: RunningExporter) -> float:
    """The exporter's peak resident memory so far (VmHWM), in MiB."""
    status = Path(f"/proc/{exporter.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def failed_for(log: str, collector: str, reason: str) -> bool:
    """Whether `log` has the line that says `collector` failed for `reason` (the whole reason, to its end)."""
    return f'msg="collector={collector} failed: {reason}"' in log


def assert_slabinfo_fails_alone(exporter: RunningExporter, reason: str) -> None:
    """A scrape fails slabinfo and conntrack (which reads slabinfo too) for `reason` and serves the rest, and the
    exporter's memory stayed small (the file was read up to the 32 MiB limit at most)."""
    text = exporter.metrics()
    assert collector_success(text) == {"buddyinfo": 1, "vmstat": 1, "slabinfo": 0, "conntrack": 0}
    assert failed_for(exporter.log(), "slabinfo", reason)
    assert failed_for(exporter.log(), "conntrack", reason)
    rss = peak_rss_mib(exporter)
    print(f"peak RSS: {rss:.1f} MiB")
    assert rss < 100, rss


def test_a_fifo_for_vmstat_fails_vmstat_at_once(exporter_factory: Callable[..., RunningExporter],
                                                tmp_path: Path) -> None:
    proc = copy_proc("rhel7-fragmented", tmp_path)
    (proc / "vmstat").unlink()
    os.mkfifo(proc / "vmstat")  # nobody writes: a blocking open would never return
    exporter = exporter_factory(*tree_flags(proc), *only_collectors("buddyinfo", "vmstat"),
                                "--collector.timeout=300s")
    text = exporter.metrics()  # answered at once, not after the 300 s timeout (the request gives up after 60 s)
    assert collector_success(text) == {"buddyinfo": 1, "vmstat": 0}
    assert value(text, "kmem_buddy_free_blocks", node="0", zone="Normal", order="0") == 40153
    assert failed_for(exporter.log(), "vmstat", f"{proc / 'vmstat'}: not a regular file (a FIFO)")


def test_dev_zero_for_slabinfo_fails_slabinfo_and_conntrack(exporter_factory: Callable[..., RunningExporter],
                                                            tmp_path: Path) -> None:
    proc = copy_proc("rhel7-fragmented", tmp_path)
    (proc / "slabinfo").unlink()
    (proc / "slabinfo").symlink_to("/dev/zero")  # endless: read whole, it once took the exporter down
    exporter = exporter_factory(*tree_flags(proc), *SLAB)
    assert_slabinfo_fails_alone(exporter, f"{proc / 'slabinfo'}: not a regular file (a character device)")


def test_an_endless_regular_slabinfo_fails_at_the_size_limit(stuck_trees: StuckTreeFactory,
                                                             exporter_factory: Callable[..., RunningExporter]) -> None:
    tree = stuck_trees(FRAGMENTED, endless={"proc/slabinfo"})  # size 0 like procfs, and never ends
    exporter = exporter_factory(*tree.path_flags(), *SLAB, "--collector.timeout=60s")
    assert_slabinfo_fails_alone(exporter, f"{tree.root / 'proc' / 'slabinfo'}: {DEFAULT_LIMIT}")
    assert tree.reads_started("proc/slabinfo") == 1  # read once for both collectors


def test_a_sparse_100mb_slabinfo_fails_at_the_size_limit(exporter_factory: Callable[..., RunningExporter],
                                                         tmp_path: Path) -> None:
    proc = copy_proc("rhel7-fragmented", tmp_path)
    os.truncate(proc / "slabinfo", 100 * 1024 * 1024)  # the real lines, then 100 MB of holes
    exporter = exporter_factory(*tree_flags(proc), *SLAB)
    assert_slabinfo_fails_alone(exporter, f"{proc / 'slabinfo'}: {DEFAULT_LIMIT}")


def test_max_file_size_fails_a_collector_whose_file_is_bigger() -> None:
    vmstat = FRAGMENTED / "proc" / "vmstat"
    assert vmstat.stat().st_size > 1024 > (FRAGMENTED / "proc" / "buddyinfo").stat().st_size
    result = run_exporter("scrape", f"--path.procfs={FRAGMENTED / 'proc'}", *only_collectors("buddyinfo", "vmstat"),
                          "--collector.max-file-size=1KiB")
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"buddyinfo": 1, "vmstat": 0}
    assert f"collector=vmstat failed: {vmstat}: larger than the 1024-byte limit (--collector.max-file-size)" \
        in result.stderr


# kernel_log reads buddyinfo (for the orders of the series it creates) in its first collection, under the collector
# timeout: a stuck buddyinfo fails kernel_log alone and holds up neither start-up nor exit. The timeout leaves the
# others time to be read beside it (from half a second on) on a loaded machine.
KERNEL_LOG = only_collectors("kernel_log", "vmstat", "kernel")
TIMEOUT = "--collector.timeout=5s"


def test_a_stuck_buddyinfo_neither_keeps_serve_from_answering_nor_fails_more(
        stuck_trees: StuckTreeFactory, exporter_factory: Callable[..., RunningExporter]) -> None:
    tree = stuck_trees(FRAGMENTED, blocked={"proc/buddyinfo"})  # never released
    exporter = exporter_factory(*tree.path_flags(), *KERNEL_LOG, TIMEOUT)  # bound and ready
    assert exporter.get("/-/healthy")[0] == 200
    text = exporter.metrics()
    assert collector_success(text) == {"kernel_log": 0, "vmstat": 1, "kernel": 1}
    assert "collector=kernel_log failed: timed out after 5s" in exporter.log()
    assert (tree.reads_started("proc/buddyinfo"), tree.reads_waiting("proc/buddyinfo")) == (1, 1)
    assert exporter.stop() == 0


def run_with_stuck_buddyinfo(stuck_trees: StuckTreeFactory, command: str) -> subprocess.CompletedProcess[str]:
    """`command` (scrape or report) with a buddyinfo whose read never returns; it must end (within a minute)."""
    tree = stuck_trees(FRAGMENTED, blocked={"proc/buddyinfo"})
    result = run_exporter(command, *tree.path_flags(), *KERNEL_LOG, TIMEOUT)
    assert tree.reads_started("proc/buddyinfo") == 1
    return result


def test_scrape_exits_despite_a_stuck_buddyinfo(stuck_trees: StuckTreeFactory) -> None:
    result = run_with_stuck_buddyinfo(stuck_trees, "scrape")
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"kernel_log": 0, "vmstat": 1, "kernel": 1}
    assert "collector=kernel_log failed: timed out after 5s" in result.stderr


def test_report_exits_despite_a_stuck_buddyinfo(stuck_trees: StuckTreeFactory) -> None:
    result = run_with_stuck_buddyinfo(stuck_trees, "report")
    assert result.returncode == 3  # could not judge: kernel_log failed, vmstat and kernel hold no zone to judge
    assert "  kernel_log: timed out after 5s" in result.stdout
    assert "collector=kernel_log failed: timed out after 5s" in result.stderr
