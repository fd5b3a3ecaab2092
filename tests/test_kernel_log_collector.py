"""The kernel_log collector through the real exporter: on fixture trees, on a stand-in log that the test writes
kernel-facility records into, without a kernel log, without permission, and live on this machine's /dev/kmsg."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import (FIXTURES, PROJECT, fixture_flags, is_root, promtool_check_metrics, require_tool, run_exporter,
                      scrape_fixture_ok, wait_for)
from metrics_text import collector_success, only_collectors, series_values, types, value
from kmem_exporter.parsers.kernel_log_patterns import EVENTS, EVENTS_WITH_ORDER
from test_kmsg_reader import write_kmsg

ONLY_KERNEL_LOG = only_collectors("kernel_log")


def events(exposition: str) -> dict[tuple[str, ...], float]:
    """kmem_kernel_log_events_total by (event,) or (event, order)."""
    found = {}
    for (name, labels), v in series_values(exposition).items():
        if name == "kmem_kernel_log_events_total":
            found[tuple(v for _, v in labels)] = v
    return found


def expected_zero_series(orders: int) -> dict[tuple[str, ...], float]:
    series: dict[tuple[str, ...], float] = {}
    for event in EVENTS:
        if event in EVENTS_WITH_ORDER:
            series.update({(event, str(o)): 0.0 for o in range(orders)})
        else:
            series[(event,)] = 0.0
    return series


def test_fixture_log_is_not_replayed() -> None:
    """The RHEL 7 tree's dev/kmsg holds the order-6 failure, the slab-cache failure and the nf_conn failure, but
    the reader starts at the end of the log: an exporter (re)starting never counts old messages."""
    assert b"page allocation failure: order:6" in (FIXTURES / "rhel7-fragmented" / "dev" / "kmsg").read_bytes()
    out = scrape_fixture_ok("rhel7-fragmented", *ONLY_KERNEL_LOG)
    assert promtool_check_metrics(out) == ""
    assert events(out) == expected_zero_series(11)
    assert value(out, "kmem_kernel_log_records_read_total") == 0
    assert value(out, "kmem_kernel_log_records_lost_total") == 0
    assert value(out, "kmem_kernel_log_reader_up") == 1
    assert value(out, "kmem_kernel_log_reader_restarts_total") == 0
    assert {n: t for n, t in types(out).items() if n.startswith("kmem_kernel_log")} == {
        "kmem_kernel_log_events_total": "counter", "kmem_kernel_log_records_read_total": "counter",
        "kmem_kernel_log_records_lost_total": "counter", "kmem_kernel_log_reader_up": "gauge",
        "kmem_kernel_log_reader_restarts_total": "counter"}


def test_orders_created_at_zero_follow_the_kernel() -> None:
    """An arm64 kernel with 64K pages has 14 orders: order 13 exists from the start, order 14 does not."""
    out = scrape_fixture_ok("arm64-64k-14orders", *ONLY_KERNEL_LOG)
    assert events(out) == expected_zero_series(14)


def test_every_fixture_tree_carries_a_kernel_log() -> None:
    """fixture_flags points --path.kmsg at <tree>/dev/kmsg; without it every full scrape of the tree would fail."""
    trees = [p for p in FIXTURES.iterdir() if (p / "proc").is_dir()]
    assert trees
    missing = [t.name for t in trees if not (t / "dev" / "kmsg").is_file()]
    assert missing == [], f"add an empty dev/kmsg to these fixture trees: {missing}"


def test_missing_kernel_log_fails_only_this_collector(tmp_path: Path) -> None:
    missing = tmp_path / "dev" / "kmsg"
    result = run_exporter("scrape", *fixture_flags("live-6.18"), f"--path.kmsg={missing}",
                          *only_collectors("kernel_log", "buddyinfo"))
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"kernel_log": 0.0, "buddyinfo": 1.0}
    assert "kmem_kernel_log_events_total" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if "level=error" in line]
    assert len(errors) == 1
    assert f"collector=kernel_log failed: {missing}: not found (no kernel log device" in errors[0]
    assert promtool_check_metrics(result.stdout) == ""


@pytest.mark.live
def test_without_cap_syslog_the_collector_says_so() -> None:
    """kernel.dmesg_restrict=1 on this machine: root without CAP_SYSLOG may not open /dev/kmsg."""
    assert Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() == "1"
    setpriv = require_tool("setpriv")
    result = subprocess.run([setpriv, "--bounding-set=-syslog", "--inh-caps=-syslog", sys.executable, "-m",
                             "kmem_exporter", "scrape", "--path.kmsg=/dev/kmsg", *only_collectors("kernel_log")],
                            capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"kernel_log": 0.0}
    assert ("collector=kernel_log failed: /dev/kmsg: permission denied (reading the kernel log needs root, or "
            "CAP_SYSLOG when kernel.dmesg_restrict=1)") in result.stderr


def test_counts_kernel_records_written_into_a_stand_in_log(tmp_path: Path, exporter_factory) -> None:
    """The real server reads a FIFO in the record format. Kernel-facility records of the sample incident are
    counted by event and order; the same text from user space (facility 1) is read but not counted."""
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)
    try:
        exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), f"--path.kmsg={fifo}", *ONLY_KERNEL_LOG)
        records = (FIXTURES / "rhel7-fragmented" / "dev" / "kmsg").read_bytes()  # 20 records, prio 3 and 4
        extra = (b"4,48231,3871300000,-;exe: page allocation failure: order:6, mode:0x10c0d0\n"
                 b"4,48232,3871300010,-;swapper/0: page allocation failure: order:14, mode:0x4020\n"
                 b"3,48233,3871300020,-;Out of memory: Killed process 4242 (java) total-vm:9187468kB, "
                 b"anon-rss:4123456kB, file-rss:1234kB, shmem-rss:0kB, UID:0 pgtables:9000kB oom_score_adj:0\n"
                 b" SUBSYSTEM=memory\n"
                 b"12,48234,3871300030,-;exe: page allocation failure: order:6, mode:0x10c0d0\n"
                 b"12,48235,3871300040,-;Unable to create nf_conn slab cache\n"
                 b"4,48241,3871300050,-;nf_conntrack: nf_conntrack: table full, dropping packet\n")
        os.write(writer, records)
        os.write(writer, extra)
        exposition = wait_for("26 records", exporter.metrics,
                              lambda e: value(e, "kmem_kernel_log_records_read_total") >= 26)
    finally:
        os.close(writer)
    assert value(exposition, "kmem_kernel_log_records_read_total") == 26
    assert value(exposition, "kmem_kernel_log_records_lost_total") == 5  # seq 48235 -> 48241
    expected = expected_zero_series(11)
    expected.update({
        ("page_allocation_failure", "6"): 2,
        ("page_allocation_failure", "14"): 1,
        ("slab_cache_create_failure",): 1,
        ("nf_conntrack_cache_failure",): 1,
        ("oom_kill",): 1,
        ("nf_conntrack_table_full",): 1,
    })
    assert events(exposition) == expected
    assert value(exposition, "kmem_kernel_log_reader_up") == 1
    assert promtool_check_metrics(exposition) == ""


@pytest.mark.live
def test_live_kmsg_reads_written_records_but_counts_no_kernel_event(exporter_factory) -> None:
    """The exporter reads this machine's /dev/kmsg. The test writes allocation-failure lines into it; the kernel
    stores them with facility 1 (user space), so they are read but never counted as kernel events."""
    assert is_root(), "writing into /dev/kmsg needs root"
    exporter = exporter_factory("--path.kmsg=/dev/kmsg", *ONLY_KERNEL_LOG)
    before = exporter.metrics()
    assert collector_success(before) == {"kernel_log": 1.0}
    assert value(before, "kmem_kernel_log_reader_up") == 1
    tag = uuid.uuid4().hex
    lines = [f"<4>exe: page allocation failure: order:6, mode:0x10c0d0 {tag}\n",
             f"<3>kmem_cache_create(nf_conntrack_ffff8803eef66180) failed with error -12 {tag}\n",
             f"<3>Unable to create nf_conn slab cache {tag}\n",
             f"<0>Out of memory: Killed process 1 (init) total-vm:1kB, anon-rss:0kB, file-rss:0kB {tag}\n",
             f"<4>nf_conntrack: nf_conntrack: table full, dropping packet {tag}\n"]
    # The kernel's own log, read from here on (before another writer on this machine could push the lines out).
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    os.lseek(fd, 0, os.SEEK_END)
    write_kmsg(lines)
    target = value(before, "kmem_kernel_log_records_read_total") + len(lines)
    after = wait_for(f"{len(lines)} more records read", exporter.metrics,
                     lambda e: value(e, "kmem_kernel_log_records_read_total") >= target)
    assert events(after) == events(before) == expected_zero_series(len(
        Path("/proc/buddyinfo").read_text().splitlines()[0].split()[4:]))
    assert value(after, "kmem_kernel_log_reader_up") == 1
    assert promtool_check_metrics(after) == ""
    # The premise, checked in the kernel's own log: the lines are there, with facility 1.
    prios = []
    try:
        while True:
            try:
                record = os.read(fd, 16384)
            except BlockingIOError:
                break
            except BrokenPipeError:
                continue
            if tag.encode() in record:
                prios.append(int(record.split(b",", 1)[0]))
    finally:
        os.close(fd)
    assert prios == [(1 << 3) | 4, (1 << 3) | 3, (1 << 3) | 3, (1 << 3) | 0, (1 << 3) | 4]


@pytest.mark.live
def test_reader_down_and_back_up_in_metrics(exporter_factory) -> None:  # type: ignore[no-untyped-def]
    """The real server reads a stand-in log that really fails: a cgroup's cgroup.procs (a kernfs file, empty, so the
    reader waits at its end like on a quiet /dev/kmsg). Removing the cgroup makes the next read() fail with ENODEV and
    the path vanish: the reader is down and retries; creating the cgroup again lets it open the path again."""
    assert is_root(), "creating a cgroup needs root"
    unified = Path("/sys/fs/cgroup/unified")
    assert (unified / "cgroup.procs").is_file(), f"{unified} is not a cgroup v2 hierarchy on this machine"
    cgroup = unified / f"kmem-exporter-test-{uuid.uuid4().hex[:12]}"
    cgroup.mkdir()
    try:
        exporter = exporter_factory(*fixture_flags("live-6.18"), f"--path.kmsg={cgroup / 'cgroup.procs'}",
                                    *ONLY_KERNEL_LOG)
        up = exporter.metrics()
        assert value(up, "kmem_kernel_log_reader_up") == 1
        assert value(up, "kmem_kernel_log_reader_restarts_total") == 0

        cgroup.rmdir()
        # A failed attempt to open the log again: counted as a restart before the attempt, logged after it.
        log = exporter.wait_for_log(f"{cgroup / 'cgroup.procs'}: not found")
        assert f"{cgroup / 'cgroup.procs'}: read failed: ENODEV" in log
        down = exporter.metrics()
        assert value(down, "kmem_kernel_log_reader_restarts_total") >= 1
        assert value(down, "kmem_kernel_log_reader_up") == 0
        assert collector_success(down) == {"kernel_log": 1.0}  # the counters are still served
        assert promtool_check_metrics(down) == ""

        cgroup.mkdir()
        # The reader opens the log again (up is set as it opens, the line logged after).
        exporter.wait_for_log(f"reading {cgroup / 'cgroup.procs'} again")
        back = exporter.metrics()
        assert value(back, "kmem_kernel_log_reader_up") == 1
        restarts = "kmem_kernel_log_reader_restarts_total"
        assert value(back, restarts) > value(down, restarts)
        assert promtool_check_metrics(back) == ""
    finally:
        if cgroup.exists():
            cgroup.rmdir()
