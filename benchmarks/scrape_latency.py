"""Scrape latency of the exporter over HTTP, with its series count, memory and CPU.

Starts `kmem-exporter serve` on a named root (`live`: this host's /proc and /sys; or a fixture tree such as
tests/fixtures/rhel7-fragmented) on a free loopback port, or targets a running exporter with --url. Scrapes
/metrics N times one after another and prints the median and p99 latency, the number of series, the exporter's
resident memory (VmRSS from /proc/<pid>/status) and the CPU seconds it used for the scrapes.

    python benchmarks/scrape_latency.py [--root live|tests/fixtures/X] [-n 200] [--all-collectors] [-- FLAGS...]
    python benchmarks/scrape_latency.py --url http://127.0.0.1:9792/metrics [--pid PID] [-n 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Optional

from exporter_process import PROJECT, cpu_seconds, memory_kib, percentile, scrape, start_serving, stop

sys.path.insert(0, str(PROJECT))

from kmem_exporter.collectors import COLLECTORS  # noqa: E402


def root_flags(root: str) -> list[str]:
    if root == "live":
        return []
    path = Path(root).resolve()
    if not (path / "proc").is_dir():
        sys.exit(f"{root}: not a fixture tree (no proc/ directory)")
    return [f"--path.procfs={path / 'proc'}", f"--path.sysfs={path / 'sys'}", f"--path.kmsg={path / 'dev' / 'kmsg'}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="live", help="`live` (this host) or a fixture tree (default: live)")
    parser.add_argument("--url", help="scrape this running exporter instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: the exporter's pid, for memory and CPU figures")
    parser.add_argument("-n", type=int, default=200, help="number of scrapes (default: 200)")
    parser.add_argument("--warmup", type=int, default=3, help="scrapes before measuring (default: 3)")
    parser.add_argument("--all-collectors", action="store_true", help="enable every collector, not just the defaults")
    parser.add_argument("flags", nargs="*", help="more exporter flags (after --)")
    args = parser.parse_args()
    if args.n < 1:
        parser.error("-n must be at least 1")

    process: Optional[subprocess.Popen[bytes]] = None
    if args.url:
        url, pid, target = args.url, args.pid, args.url
    else:
        flags = root_flags(args.root) + args.flags
        if args.all_collectors:
            flags += [f"--collector.{name}" for name in COLLECTORS]
        process, base = start_serving(["--log.level=error", *flags])
        url = base + "/metrics"
        pid, target = process.pid, f"root {args.root}" + (" (all collectors)" if args.all_collectors else "")
    try:
        for _ in range(args.warmup):
            scrape(url)
        cpu_before = cpu_seconds(pid) if pid else None
        latencies, body = [], b""
        for _ in range(args.n):
            latency, body = scrape(url)
            latencies.append(latency)
        cpu_used = cpu_seconds(pid) - cpu_before if pid and cpu_before is not None else None
        rss = memory_kib(pid)["VmRSS"] if pid else None
    finally:
        if process is not None:
            stop(process)

    lines = body.decode().splitlines()
    series = sum(1 for line in lines if line and not line.startswith("#"))
    failed = [line for line in lines if line.startswith("kmem_collector_success") and line.endswith(" 0.0")]
    print(f"target:         {target}")
    print(f"scrapes:        {args.n} (after {args.warmup} warm-up)")
    print(f"latency median: {statistics.median(latencies) * 1000:.2f} ms")
    print(f"latency p99:    {percentile(latencies, 0.99) * 1000:.2f} ms")
    print(f"latency max:    {max(latencies) * 1000:.2f} ms")
    print(f"series:         {series} ({len(body)} bytes)")
    print(f"exporter RSS:   {rss / 1024:.1f} MiB" if rss is not None else "exporter RSS:   unknown (give --pid)")
    if cpu_used is not None:
        print(f"exporter CPU:   {cpu_used:.2f} s for {args.n} scrapes ({cpu_used / args.n * 1000:.1f} ms per scrape)")
    else:
        print("exporter CPU:   unknown (give --pid)")
    if failed:
        names = [line.split('"')[1] for line in failed]
        print(f"failed collectors: {', '.join(names)}")


if __name__ == "__main__":
    main()
