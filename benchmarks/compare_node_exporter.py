"""kmem-exporter side by side with Debian's node_exporter on the same host root: same values, and what each costs.

    .venv/bin/python benchmarks/compare_node_exporter.py [--root /] [-n 300] [--worst-case] [--kmem-args "..."]

Starts `prometheus-node-exporter` with its buddyinfo, slabinfo and vmstat collectors (every vmstat field) and
kmem-exporter twice: "same data sets" (buddyinfo, slabinfo without folding and with node_exporter's five columns,
vmstat with every field) and "default settings". All read the same root (this host's / by default;
`--worst-case` generates the synthetic RHEL 7 node of worst_case_root.py in a temporary directory).

First it checks that node_exporter and the "same data sets" kmem-exporter report the same values: free blocks per
node, zone and order, active objects and objects per slab cache (names listed twice in slabinfo are left out:
kmem-exporter sums them, node_exporter does not) and every vmstat field. Each check takes a kmem-exporter scrape,
a node_exporter scrape and a kmem-exporter scrape back to back; a node_exporter value equal to either kmem-exporter
value, or between the two (it moved while the scrapes ran), agrees; a series that disagrees is checked again, up to
5 times, before it counts as a mismatch.

Then it scrapes the three exporters in turn, N times each, over loopback (a new connection per scrape, no gzip
unless --gzip), and prints per exporter: latency median and p99, CPU per scrape (utime + stime of the process from
/proc/<pid>/stat over all scrapes: background work included), bytes and series of one scrape, RSS and peak RSS, with
the kmem/node ratios; and "the floor": the time to open and read, once, the kernel files a scrape needs. Installs
nothing: `make benchmark` installs Debian's prometheus-node-exporter when it is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from exporter_process import (Fetched, cpu_seconds, fetch, free_port, memory_kib, percentile,
                              series_count, start_process, start_serving, stop)
from worst_case_root import generate as generate_worst_case

NODE_EXPORTER_NAMES = ("prometheus-node-exporter", "node_exporter")
NODE_COLLECTORS = ["--collector.disable-defaults", "--collector.buddyinfo", "--collector.slabinfo",
                   "--collector.vmstat", "--collector.vmstat.fields=.*"]
# node_exporter's slabinfo collector exports five columns per cache: active_objs, num_objs, objsize, objperslab
# and pagesperslab.
NODE_SLAB_COLUMNS = "objects_active|objects|object_size_bytes|objects_per_slab|pages_per_slab"
SAME_DATA = ["--collector.disable-defaults", "--collector.buddyinfo", "--collector.slabinfo", "--collector.vmstat",
             "--collector.vmstat.fields=.*", "--no-collector.slabinfo.fold-caches",
             f"--collector.slabinfo.fields={NODE_SLAB_COLUMNS}"]
SAME_DATA_FILES = ("proc/buddyinfo", "proc/slabinfo", "proc/vmstat")
# What the default collectors read on every scrape (the memcg and netns walks run in the background, the kernel
# log is followed as it grows).
DEFAULT_FILES = (*SAME_DATA_FILES, "proc/zoneinfo", "proc/cmdline", "proc/sys/kernel/osrelease",
                 "proc/sys/net/netfilter/nf_conntrack_count", "proc/sys/net/netfilter/nf_conntrack_max",
                 "proc/sys/vm/extfrag_threshold", "proc/sys/vm/min_free_kbytes", "proc/sys/vm/vfs_cache_pressure",
                 "proc/sys/vm/zone_reclaim_mode", "proc/sys/vm/watermark_scale_factor",
                 "proc/sys/vm/watermark_boost_factor", "proc/sys/vm/compaction_proactiveness",
                 "sys/kernel/debug/extfrag/extfrag_index", "sys/kernel/debug/extfrag/unusable_index")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
CHECK_ROUNDS = 5

Key = tuple[str, ...]


@dataclass
class Target:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    latencies: list[float] = field(default_factory=list)
    last: Optional[Fetched] = None
    cpu: float = 0.0
    rss_kib: int = 0
    peak_kib: int = 0

    def get(self, headers: dict[str, str]) -> Fetched:
        result = fetch(self.url, headers)
        if result.status != 200:
            sys.exit(f"{self.name}: {self.url} answered HTTP {result.status}")
        return result


def node_exporter_binary(given: Optional[str]) -> str:
    for name in ([given] if given else NODE_EXPORTER_NAMES):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("node_exporter is not installed (looked for " + ", ".join([given] if given else NODE_EXPORTER_NAMES)
             + "): `make benchmark` installs Debian's prometheus-node-exporter, or run "
               "`apt-get install prometheus-node-exporter`")


def kmem_root_flags(root: Path) -> list[str]:
    flags = [f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}"]
    if root != Path("/"):
        flags.append(f"--path.kmsg={root / 'dev' / 'kmsg'}")
    return flags


def start_node_exporter(binary: str, root: Path) -> Target:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [binary, *NODE_COLLECTORS, f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}",
               f"--web.listen-address=127.0.0.1:{port}"]
    process = start_process(command, base + "/", stderr=subprocess.DEVNULL, what="node_exporter")
    return Target("node_exporter", process, base + "/metrics")


def start_kmem(name: str, flags: Sequence[str]) -> Target:
    process, base = start_serving(["--log.level=error", *flags], stderr=subprocess.DEVNULL)
    return Target(name, process, base + "/metrics")


def parse_samples(body: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for line in body.decode().splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = frozenset(LABEL.findall(match.group(2) or ""))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def common_keys(body: bytes, kmem: bool) -> dict[Key, float]:
    """The values both exporters export, under one key: (data set, identifying labels...)."""
    values: dict[Key, float] = {}
    for (name, label_set), value in parse_samples(body).items():
        labels = dict(label_set)
        if kmem:
            if name == "kmem_buddy_free_blocks":
                values[("buddyinfo", labels["node"], labels["zone"], labels["order"])] = value
            elif name in ("kmem_slab_objects_active", "kmem_slab_objects"):
                values[(name.removeprefix("kmem_slab_"), labels["cache"])] = value
            elif name.startswith("kmem_vmstat_"):
                # counters carry the `_total` suffix; no /proc/vmstat field name ends with it
                values[("vmstat", name.removeprefix("kmem_vmstat_").removesuffix("_total"))] = value
        elif name == "node_buddyinfo_blocks":
            values[("buddyinfo", labels["node"], labels["zone"], labels["size"])] = value
        elif name in ("node_slabinfo_active_objects", "node_slabinfo_objects"):
            kind = "objects_active" if name.endswith("active_objects") else "objects"
            values[(kind, labels["slab"])] = value
        elif name.startswith("node_vmstat_"):
            values[("vmstat", name.removeprefix("node_vmstat_"))] = value
    return values


def failed_collectors(body: bytes, metric: str) -> list[str]:
    return sorted(dict(labels)["collector"] for (name, labels), value in parse_samples(body).items()
                  if name == metric and value == 0)


def slabinfo_file(root: Path) -> dict[Key, float]:
    """Active objects and objects per cache straight from the file (names listed twice keep the last line)."""
    values: dict[Key, float] = {}
    for line in (root / "proc" / "slabinfo").read_text().splitlines()[2:]:
        fields = line.split()
        values[("objects_active", fields[0])] = float(fields[1])
        values[("objects", fields[0])] = float(fields[2])
    return values


def duplicate_caches(root: Path) -> set[str]:
    names = [line.split(None, 1)[0] for line in (root / "proc" / "slabinfo").read_text().splitlines()[2:] if line]
    return {name for name, count in Counter(names).items() if count > 1}


def agrees(theirs: float, before: float, after: float) -> Optional[str]:
    """"equal", "moved" (between the two kmem-exporter scrapes) or None."""
    if theirs in (before, after):
        return "equal"
    return "moved" if min(before, after) <= theirs <= max(before, after) else None


def check_values(node: Target, kmem: Target, root: Path, headers: dict[str, str]) -> list[str]:
    """Lines of the comparison's summary, per data set."""
    skipped = duplicate_caches(root)

    def compared(values: dict[Key, float]) -> set[Key]:
        return {k for k in values if not (k[0].startswith("objects") and k[1] in skipped)}

    counts: dict[tuple[str, str], int] = {}
    lines = []
    slab_from_file = "slabinfo" in failed_collectors(node.get(headers).body, "node_scrape_collector_success")
    if slab_from_file:
        size = (root / "proc" / "slabinfo").stat().st_size
        lines.append(f"  node_exporter's slabinfo collector failed on this root ({size / 1e6:.1f} MB slabinfo): "
                     "kmem-exporter's slab values compared with the file instead")
    pending: set[Key] = set()
    only: dict[str, set[Key]] = {}
    for attempt in range(CHECK_ROUNDS):
        before = common_keys(kmem.get(headers).body, True)
        theirs = common_keys(node.get(headers).body, False)
        if slab_from_file:
            theirs.update(slabinfo_file(root))
        after = common_keys(kmem.get(headers).body, True)
        if attempt == 0:
            only = {"node_exporter": compared(theirs) - compared(before),
                    "kmem-exporter": compared(before) - compared(theirs)}
            pending = compared(theirs) & compared(before)
        for key in list(pending):
            if key in before and key in after and key in theirs:
                verdict = agrees(theirs[key], before[key], after[key])
                if verdict:
                    counts[(key[0], verdict)] = counts.get((key[0], verdict), 0) + 1
                    pending.discard(key)
        if not pending:
            break
    for kind in ("buddyinfo", "objects_active", "objects", "vmstat"):
        bad = sorted(k[-1] for k in pending if k[0] == kind)
        line = (f"  {kind:<15} equal {counts.get((kind, 'equal'), 0):>6}, moved between scrapes "
                f"{counts.get((kind, 'moved'), 0):>4}, mismatched {len(bad):>3}")
        line += f" ({', '.join(bad[:5])})" if bad else ""
        for side, keys in only.items():
            names = sorted(k[-1] for k in keys if k[0] == kind)
            if names:
                line += f"; only in {side}: {len(names)} ({', '.join(names[:5])})"
        lines.append(line)
    if skipped:
        lines.append(f"  left out: {len(skipped)} cache names listed twice in slabinfo "
                     f"({', '.join(sorted(skipped)[:5])})")
    return lines


def floor_ms(root: Path, files: Sequence[str], repeat: int = 21) -> float:
    """Median time to open and read each existing, readable file once."""
    paths = []
    for name in files:
        path = root / name
        try:
            with open(path, "rb") as f:
                f.read()
            paths.append(path)
        except OSError:
            continue
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        for path in paths:
            with open(path, "rb") as f:
                f.read()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(targets: list[Target], n: int, headers: dict[str, str]) -> None:
    for target in targets:
        for _ in range(3):
            target.get(headers)
    started = {t.name: cpu_seconds(t.process.pid) for t in targets}
    for _ in range(n):
        for target in targets:
            target.last = target.get(headers)
            target.latencies.append(target.last.latency)
    for target in targets:
        target.cpu = cpu_seconds(target.process.pid) - started[target.name]
        memory = memory_kib(target.process.pid)
        target.rss_kib, target.peak_kib = memory["VmRSS"], memory["VmHWM"]


def idle_millicores(targets: list[Target], seconds: float) -> dict[str, float]:
    """CPU each process uses with no scrape at all (background work), in thousandths of a core."""
    before = {t.name: cpu_seconds(t.process.pid) for t in targets}
    time.sleep(seconds)
    return {t.name: (cpu_seconds(t.process.pid) - before[t.name]) / seconds * 1000 for t in targets}


def failures(targets: list[Target]) -> list[str]:
    lines = []
    for target in targets:
        assert target.last is not None
        metric = "node_scrape_collector_success" if target.name == "node_exporter" else "kmem_collector_success"
        failed = failed_collectors(target.last.body, metric)
        if failed:
            lines.append(f"{target.name}: collectors that failed: {', '.join(failed)}")
    return lines


def figures(target: Target, n: int) -> list[float]:
    assert target.last is not None
    return [statistics.median(target.latencies) * 1000, percentile(target.latencies, 0.99) * 1000,
            target.cpu / n * 1000, target.last.wire_bytes / 1024, series_count(target.last.body),
            target.rss_kib / 1024, target.peak_kib / 1024]


def print_table(node: Target, kmem: list[Target], n: int) -> None:
    columns = ("median ms", "p99 ms", "CPU ms/scrape", "KiB/scrape", "series", "RSS MiB", "peak MiB")
    formats: tuple[Callable[[float], str], ...] = tuple(
        [lambda v: f"{v:.1f}"] * 4 + [lambda v: f"{v:.0f}"] + [lambda v: f"{v:.1f}"] * 2)
    print(f"{'':<26}" + "".join(f"{c:>14}" for c in columns))
    base = figures(node, n)
    print(f"{node.name:<26}" + "".join(f"{fmt(v):>14}" for fmt, v in zip(formats, base)))
    for target in kmem:
        mine = figures(target, n)
        print(f"{'kmem ' + target.name:<26}" + "".join(f"{fmt(v):>14}" for fmt, v in zip(formats, mine)))
        print(f"{'  ratio kmem/node':<26}" + "".join(f"{(m / b if b else float('nan')):>13.2f}x"
                                                    for m, b in zip(mine, base)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/"), help="host root whose proc/ and sys/ both read")
    parser.add_argument("-n", type=int, default=300, help="scrapes per exporter (default: 300)")
    parser.add_argument("--worst-case", action="store_true", help="generate the worst-case root in a temporary "
                        "directory and use it (see worst_case_root.py)")
    parser.add_argument("--kmem-args", default="", help="more kmem-exporter flags for both configurations")
    parser.add_argument("--node-exporter", help="node_exporter binary (default: prometheus-node-exporter)")
    parser.add_argument("--gzip", action="store_true", help="ask for gzip, as Prometheus does (bytes as sent)")
    parser.add_argument("--idle", type=float, default=0, help="also measure CPU over this many idle seconds "
                        "(background work) and estimate the cost at a 15 s scrape interval")
    args = parser.parse_args()
    if args.n < 1:
        parser.error("-n must be at least 1")
    binary = node_exporter_binary(args.node_exporter)
    print(f"load average at start: {'%.2f %.2f %.2f' % os.getloadavg()}; "
          f"{os.cpu_count()} CPUs; {os.uname().release}")

    workdir: Optional[Path] = None
    root = args.root.resolve()
    if args.worst_case:
        workdir = Path(tempfile.mkdtemp(prefix="kmem-worst-case-"))
        root = workdir / "root"
        started = time.perf_counter()
        generate_worst_case(root)
        print(f"generated the worst-case root in {root} ({time.perf_counter() - started:.1f}s)")
    extra = shlex.split(args.kmem_args)
    headers = {"Accept-Encoding": "gzip"} if args.gzip else {}
    targets: list[Target] = []
    try:
        node = start_node_exporter(binary, root)
        targets.append(node)
        same = start_kmem("same data sets", [*kmem_root_flags(root), *SAME_DATA, *extra])
        targets.append(same)
        default = start_kmem("default settings", [*kmem_root_flags(root), *extra])
        targets.append(default)
        print(f"root {root}: values of node_exporter against kmem-exporter (same data sets):")
        for line in check_values(node, same, root, headers):
            print(line)
        measure(targets, args.n, headers)
        idle = idle_millicores(targets, args.idle) if args.idle > 0 else {}
        floors = (floor_ms(root, SAME_DATA_FILES), floor_ms(root, DEFAULT_FILES))
    finally:
        for target in targets:
            stop(target.process)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{args.n} scrapes of each, in turn, over loopback{' with gzip' if args.gzip else ''}; "
          f"kmem same data sets: {' '.join(SAME_DATA)}")
    print_table(node, [same, default], args.n)
    for line in failures(targets):
        print(line)
    print(f"floor (open and read once): {', '.join(SAME_DATA_FILES)}: {floors[0]:.2f} ms; "
          f"every file of the default collectors' scrape: {floors[1]:.2f} ms")
    for target in targets:
        if target.name in idle:
            per_scrape = target.cpu / args.n
            share = (per_scrape / 15 + idle[target.name] / 1000) * 100
            print(f"{target.name}: idle {idle[target.name]:.1f} millicores over {args.idle:g}s; at a 15 s interval "
                  f"about {share:.2f} % of a core (CPU per scrape / 15 s + idle)")


if __name__ == "__main__":
    main()
