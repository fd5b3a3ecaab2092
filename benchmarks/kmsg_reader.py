"""Throughput of the kernel log reader, and the exporter's CPU while the kernel log floods.

1. Stand-in: `--records` records in the /dev/kmsg record format (mostly ordinary kernel messages, with allocation
   failures, OOM kills and user-space lines mixed in) are appended at once to a file that the kernel_log
   collector's reader is following; records per second and CPU seconds until every one is read and matched.
   Two ways: the file as a stream (many records per read(), as a pipe or file gives them), and one record per
   read() like /dev/kmsg (the records handed over by a read function, no system call: the Python cost alone).
2. Live (root): the real exporter (`serve`) reads this machine's /dev/kmsg while this script writes records into
   it as fast as it can for `--seconds` (at most 30; at most `--max-flood` records). Reports what the kernel
   took, what the exporter read and lost, and the exporter's CPU time from /proc/<pid>/stat.

    python benchmarks/kmsg_reader.py [--records 200000] [--seconds 5] [--max-flood 1000000] [--no-live]

The flood writes into the real kernel log: it pushes this machine's older kernel messages out of the log buffer.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from exporter_process import PROJECT, cpu_seconds, start_serving, stop

sys.path.insert(0, str(PROJECT))

from kmem_exporter.collectors.kernel_log import KernelLogCollector  # noqa: E402
from kmem_exporter.config import Config  # noqa: E402

# A mix shaped like a busy container host's kernel log: ordinary messages, a few events, some user-space lines.
TEXTS = [
    (6, "IPv6: ADDRCONF(NETDEV_CHANGE): veth5a3b1c2: link becomes ready"),
    (6, "docker0: port 3(veth5a3b1c2) entered forwarding state"),
    (6, "device veth5a3b1c2 entered promiscuous mode"),
    (4, "CPU: 1 PID: 18377 Comm: exe Not tainted 3.10.0-514.el7.x86_64 #1"),
    (4, "Node 0 Normal: 34178*4kB (UEM) 20118*8kB (UEM) 412*16kB (UEM) 115*32kB (EM) 46*64kB (M) = 311640kB"),
    (4, "[<ffffffff811869a0>] warn_alloc_failed+0x110/0x180"),
    (5, "audit: type=1400 audit(1700000000.123:456): apparmor=\"DENIED\" operation=\"open\" profile=\"docker\""),
    (4, "exe: page allocation failure: order:6, mode:0x10c0d0"),
    (4, "kmem_cache_create(nf_conntrack_ffff8803eef66180) failed with error -12"),
    (3, "Memory cgroup out of memory: Killed process 4242 (java) total-vm:1148292kB, anon-rss:260940kB, "
        "file-rss:32184kB, shmem-rss:0kB, UID:1000 pgtables:1348kB oom_score_adj:999"),
    (12, "exe: page allocation failure: order:6, mode:0x10c0d0"),  # user space (facility 1)
    (14, "systemd[1]: Started Session 42 of user core."),
]


def make_records(count: int) -> list[bytes]:
    records = []
    for seq in range(1, count + 1):
        prio, text = TEXTS[seq % len(TEXTS)]
        records.append(f"{prio},{seq},{seq * 37},-;{text}\n".encode() + (b" SUBSYSTEM=net\n" if seq % 3 == 0 else b""))
    return records


def collector_for(path: Path) -> KernelLogCollector:
    return KernelLogCollector(Config.from_values({"path.kmsg": str(path)}))


def wait_for_read(collector: KernelLogCollector, count: int) -> None:
    while collector.reader.state().records_read < count:
        time.sleep(0.001)


def bench_stream(records: list[bytes]) -> tuple[float, float]:
    """Seconds and CPU seconds until the collector has read and matched every record appended to a file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kmsg"
        path.touch()
        collector = collector_for(path)
        asyncio.run(collector.start())
        data = b"".join(records)
        cpu, wall = time.process_time(), time.perf_counter()
        with open(path, "ab") as f:
            f.write(data)
        wait_for_read(collector, len(records))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        asyncio.run(collector.stop())
    return wall, cpu


def bench_record_per_read(records: list[bytes]) -> tuple[float, float]:
    """The same with one record per read(), as /dev/kmsg gives them, from a read function (no system call)."""
    pending = iter(records)

    def read(fd: int, size: int) -> bytes:
        record = next(pending, None)
        if record is None:
            time.sleep(0.01)
            raise BlockingIOError(errno.EAGAIN, "no record")
        return record

    collector = KernelLogCollector(Config.from_values({"path.kmsg": "/dev/null"}), read=read)
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(collector.start())
    wait_for_read(collector, len(records))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    asyncio.run(collector.stop())
    return wall, cpu


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not exposed"
    return float(match.group(1))


def flood(seconds: float, limit: int) -> int:
    """Write records into /dev/kmsg for `seconds`; a new open file every 10 (the kernel's per-file rate limit)."""
    line = b"<6>kmem-exporter benchmark: exe: page allocation failure: order:6, mode:0x10c0d0\n"
    written = 0
    end = time.monotonic() + seconds
    while written < limit and time.monotonic() < end:
        fd = os.open("/dev/kmsg", os.O_WRONLY)
        try:
            for _ in range(10):
                os.write(fd, line)
            written += 10
        finally:
            os.close(fd)
    return written


def bench_live(seconds: float, limit: int) -> None:
    only = [f"--no-collector.{name}" for name in ("pagetypeinfo", "extfrag", "zoneinfo", "vmstat", "sysctl",
                                                  "kernel", "slabinfo", "conntrack", "netns", "memcg")]
    process, base = start_serving(["--path.kmsg=/dev/kmsg", *only], stderr=subprocess.DEVNULL)
    url = base + "/metrics"
    try:
        read_before = metric(url, "kmem_kernel_log_records_read_total")
        lost_before = metric(url, "kmem_kernel_log_records_lost_total")
        cpu_before = cpu_seconds(process.pid)
        started = time.perf_counter()
        written = flood(seconds, limit)
        flood_wall = time.perf_counter() - started
        # let the reader catch up: wait until the count stops moving
        previous = -1.0
        while True:
            time.sleep(0.2)
            now = metric(url, "kmem_kernel_log_records_read_total")
            if now == previous:
                break
            previous = now
        cpu = cpu_seconds(process.pid) - cpu_before
        read = previous - read_before
        lost = metric(url, "kmem_kernel_log_records_lost_total") - lost_before
        events = metric(url, 'kmem_kernel_log_events_total{event="page_allocation_failure",order="6"}')
    finally:
        stop(process)
    print(f"live /dev/kmsg flood: {written} records written in {flood_wall:.1f} s ({written / flood_wall:,.0f}/s)")
    print(f"  exporter read {read:,.0f} records (the flood and any other kernel messages), lost {lost:,.0f} "
          f"(overwritten by the kernel before they were read), counted {events:.0f} kernel events "
          f"(the flood is user space: 0 expected)")
    print(f"  exporter CPU: {cpu:.2f} s over {flood_wall:.1f} s = {100 * cpu / flood_wall:.0f}% of one core, "
          f"{1e6 * cpu / max(read, 1):.1f} us per record read")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-flood", type=int, default=1_000_000)
    parser.add_argument("--no-live", action="store_true", help="skip the /dev/kmsg flood")
    args = parser.parse_args()
    seconds = min(args.seconds, 30.0)

    records = make_records(args.records)
    size = sum(map(len, records))
    kernel_facility = sum(1 for r in records if not r.startswith(b'1'))
    print(f"stand-in: {len(records):,} records, {size / 1e6:.1f} MB, {kernel_facility} kernel-facility")
    wall, cpu = bench_stream(records)
    print(f"  stream (file, many records per read): {len(records) / wall:,.0f} records/s, "
          f"{1e6 * cpu / len(records):.1f} us CPU per record")
    wall, cpu = bench_record_per_read(records)
    print(f"  one record per read (like /dev/kmsg, no syscall): {len(records) / wall:,.0f} records/s, "
          f"{1e6 * cpu / len(records):.1f} us CPU per record")
    if args.no_live:
        return
    if os.geteuid() != 0:
        print("live flood skipped: writing into /dev/kmsg needs root")
        return
    bench_live(seconds, args.max_flood)


if __name__ == "__main__":
    main()
