"""Writes a synthetic worst-case RHEL 7 (3.10) host root: the node this exporter exists for, at its largest.

    .venv/bin/python benchmarks/worst_case_root.py DIR [--conntrack-caches 20000] [--cgroups 65535] [--nodes 4]

DIR receives a copy of tests/fixtures/rhel7-fragmented (kernel release, cmdline, vm sysctls, conntrack table
fill, kernel log, process table) with these files replaced:
- proc/slabinfo: SLUB layout, the `nf_conntrack_<16 hex digit address>` caches that 3.10 creates per network
  namespace and never frees when the namespace leaks (newest first, as the kernel lists them, geometry and counts
  of the real RHEL 7 samples), then the 257 ordinary caches with real names and geometry (this machine's 6.18
  slabinfo and the 2.6.30 and Synology samples of tests/fixtures, tunables set to SLUB's zeros);
- proc/buddyinfo, proc/pagetypeinfo, proc/zoneinfo: NUMA nodes in the 3.10 layout written by
  tests/fixtures/construct_fragmentation.py; node 0 has the real fragmented node's free blocks, the others those
  of tests/fixtures/numa4; proc/vmstat's nr_free_pages and proc/sys/vm/min_free_kbytes agree with them;
- sys/fs/cgroup/memory: a kubelet-layout cgroup v1 memory tree of that many cgroups (the kernel's limit by
  default), with proc/cgroups' memory row set to match; debugfs is left out, so extfrag is computed from buddyinfo.
Every collector succeeds on the result (tests/test_benchmarks.py checks it on a small one).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from itertools import cycle, islice
from pathlib import Path
from typing import Iterator

PROJECT = Path(__file__).resolve().parent.parent
FIXTURES = PROJECT / "tests" / "fixtures"
sys.path[:0] = [str(PROJECT), str(FIXTURES), str(PROJECT / "benchmarks")]

from construct_fragmentation import (Host, Zone, buddyinfo_line, pagetypeinfo, set_watermarks, x86_16g,  # noqa: E402
                                     zoneinfo as zoneinfo_text)
from kmem_exporter.parsers.buddyinfo import parse_buddyinfo  # noqa: E402
from memcg_tree import MEMORY_CGROUP_ID_LIMIT, replace_memory_cgroups  # noqa: E402

BASE = FIXTURES / "rhel7-fragmented"
ORDINARY_SOURCES = ("live-6.18", "slab-2.6.30", "synology-ds918")
# SLAB's kmalloc caches (size-N) and the plain and per-counter conntrack caches are not what 3.10's SLUB lists.
NOT_ON_RHEL7 = re.compile(r"size-\d+(\(DMA\))?|nf_conntrack(_\d+)?")
CONNTRACK_SAMPLES = ("rhel7-fragmented", "rhel7-healthy")
NODE_SPAN = 4194304  # pages: 16 GiB per node
# 3.10 with transparent huge pages on 6 populated zones: 2 + 3 * 3 pageblocks of 512 pages per zone, 4 KiB pages.
MIN_FREE_KBYTES = 135168


def slab_line(name: str, active: int, total: int, size: int, per_slab: int, pages: int, active_slabs: int,
              slabs: int) -> str:
    """One /proc/slabinfo line as SLUB prints it (tunables and sharedavail are always 0)."""
    return (f"{name:<17} {active:6d} {total:6d} {size:6d} {per_slab:4d} {pages:4d} : tunables {0:4d} {0:4d} {0:4d}"
            f" : slabdata {active_slabs:6d} {slabs:6d} {0:6d}\n")


def slab_rows(tree: str) -> Iterator[list[str]]:
    for line in (FIXTURES / tree / "proc" / "slabinfo").read_text().splitlines()[2:]:
        yield line.split()


def as_slub(fields: list[str]) -> str:
    numbers = [int(fields[i]) for i in (1, 2, 3, 4, 5, 13, 14)]
    return slab_line(fields[0], *numbers)


def ordinary_caches() -> list[str]:
    """Real cache lines, first occurrence of each name, without the ones a 3.10 SLUB kernel does not have."""
    seen: dict[str, str] = {}
    for tree in ORDINARY_SOURCES:
        for fields in slab_rows(tree):
            if fields[0] not in seen and not NOT_ON_RHEL7.fullmatch(fields[0]):
                seen[fields[0]] = as_slub(fields)
    return list(seen.values())


def conntrack_caches(count: int) -> list[str]:
    """`count` per-namespace caches named after distinct kernel addresses, with the real samples' counts."""
    samples = [fields for tree in CONNTRACK_SAMPLES for fields in slab_rows(tree)]
    lines = []
    for i, fields in enumerate(islice(cycle(samples), count)):
        address = 0xFFFF880000000000 + 0x2E47F3A80 + i * 0x1380
        lines.append(as_slub([f"nf_conntrack_{address:016x}", *fields[1:]]))
    return lines


def slabinfo(conntrack: int) -> str:
    header = "".join((BASE / "proc" / "slabinfo").read_text().splitlines(keepends=True)[:2])
    return header + "".join(conntrack_caches(conntrack)) + "".join(ordinary_caches())


def numa_zones(nodes: int) -> list[Zone]:
    """Node 0: the real fragmented RHEL 7 node's DMA, DMA32 and Normal; every other node one Normal zone with the
    free blocks of one of numa4's Normal zones."""
    real = {b.zone: b.free_blocks for b in parse_buddyinfo((BASE / "proc" / "buddyinfo").read_text())}
    others = [b.free_blocks for b in parse_buddyinfo((FIXTURES / "numa4" / "proc" / "buddyinfo").read_text())
              if b.zone == "Normal"]
    zones = x86_16g("0")
    for zone in zones:
        zone.free_blocks = real[zone.name]
    for node in range(1, nodes):
        start = 1048576 + node * NODE_SPAN
        zones.append(Zone(str(node), "Normal", NODE_SPAN, NODE_SPAN, NODE_SPAN - 65536, start,
                          others[(node - 1) % len(others)]))
    return zones


def write_fragmentation(proc: Path, nodes: int) -> int:
    """buddyinfo, pagetypeinfo and zoneinfo of a `nodes`-node 3.10 host; returns its free pages."""
    host = Host("worst-case", "3.10", numa_zones(nodes), MIN_FREE_KBYTES, cpus=4)
    set_watermarks(host)
    (proc / "buddyinfo").write_text("".join(buddyinfo_line(z) for z in host.zones))
    (proc / "pagetypeinfo").write_text(pagetypeinfo(host))
    (proc / "zoneinfo").write_text(zoneinfo_text(host))
    (proc / "sys" / "vm" / "min_free_kbytes").write_text(f"{MIN_FREE_KBYTES}\n")
    return sum(z.free for z in host.zones)


def generate(root: Path, conntrack: int = 20000, cgroups: int = MEMORY_CGROUP_ID_LIMIT, nodes: int = 4) -> None:
    """Write the worst-case host root into `root` (which must not exist yet)."""
    shutil.copytree(BASE, root, symlinks=True)
    shutil.rmtree(root / "sys" / "kernel" / "debug")
    proc = root / "proc"
    (proc / "slabinfo").write_text(slabinfo(conntrack))
    free = write_fragmentation(proc, nodes)
    vmstat = proc / "vmstat"
    vmstat.write_text(re.sub(r"^nr_free_pages \d+$", f"nr_free_pages {free}", vmstat.read_text(), flags=re.M))
    replace_memory_cgroups(root, cgroups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="where to write the host root (must not exist)")
    parser.add_argument("--conntrack-caches", type=int, default=20000)
    parser.add_argument("--cgroups", type=int, default=MEMORY_CGROUP_ID_LIMIT, help="memory cgroups, root included")
    parser.add_argument("--nodes", type=int, default=4, help="NUMA nodes")
    args = parser.parse_args()
    if args.dir.exists():
        parser.error(f"{args.dir} exists")
    if args.cgroups < 2 or args.nodes < 1 or args.conntrack_caches < 0:
        parser.error("--cgroups at least 2, --nodes at least 1, --conntrack-caches not negative")
    started = time.perf_counter()
    generate(args.dir, args.conntrack_caches, args.cgroups, args.nodes)
    print(f"wrote {args.dir}: {args.conntrack_caches} conntrack caches, {args.cgroups} memory cgroups, "
          f"{args.nodes} NUMA nodes ({time.perf_counter() - started:.1f}s)")


if __name__ == "__main__":
    main()
