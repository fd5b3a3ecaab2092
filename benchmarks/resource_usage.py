"""Memory and CPU of a serving exporter: the figures the Kubernetes DaemonSet's requests and limits are sized from.

Starts `kmem-exporter serve` (every collector at its default) on this host's /proc and /sys or on a fixture tree,
scrapes /metrics a number of times at a fixed interval, as Prometheus would, and prints the peak and final resident
set size and the CPU time used per scrape and per second of wall time (background collectors included).

    python benchmarks/resource_usage.py [--scrapes 60] [--interval 1] [--root /]
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from pathlib import Path

from exporter_process import cpu_seconds, memory_kib, start_serving, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=60)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument("--root", default="/", help="host root whose proc/ and sys/ are read (a fixture tree)")
    parser.add_argument("extra", nargs="*", help="more exporter flags")
    args = parser.parse_args()

    root = Path(args.root)
    process, url = start_serving([f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}", "--log.level=error",
                                  *args.extra])
    try:
        started_memory = memory_kib(process.pid)
        cpu_before, wall_before = cpu_seconds(process.pid), time.monotonic()
        size = 0
        for _ in range(args.scrapes):
            with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
                size = len(response.read())
            time.sleep(args.interval)
        cpu_used, wall = cpu_seconds(process.pid) - cpu_before, time.monotonic() - wall_before
        final_memory = memory_kib(process.pid)
    finally:
        stop(process)

    print(f"root: {root}  scrapes: {args.scrapes} every {args.interval:g}s  exposition: {size} bytes")
    print(f"rss after start: {started_memory['VmRSS'] / 1024:.1f} MiB")
    print(f"rss at end:      {final_memory['VmRSS'] / 1024:.1f} MiB")
    print(f"peak rss:        {final_memory['VmHWM'] / 1024:.1f} MiB")
    print(f"cpu per scrape:  {cpu_used / args.scrapes * 1000:.1f} ms")
    print(f"cpu average:     {cpu_used / wall * 1000:.1f} millicores over {wall:.0f}s")


if __name__ == "__main__":
    main()
