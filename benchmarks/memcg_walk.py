"""Pass time and peak memory of the memory-cgroup walk on a synthetic 65,535-cgroup tree (a node at the kernel's
memory cgroup ID limit).

Generates a cgroup v1 memory hierarchy laid out as kubelet does (kubepods/<qos>/pod<uid>/<container id>) in a
temporary directory, then times full passes of the walk in both modes: `always` (count directories) and
`per-cgroup` (also open and read every cgroup's memory.kmem.slabinfo, as on 3.10 kernels). Peak memory is
measured with tracemalloc in a separate pass, so that tracing does not inflate the times.

    python benchmarks/memcg_walk.py [--cgroups 65535] [--files minimal|real] [--passes 3] [--dir /tmp]
    python benchmarks/memcg_walk.py --live-cgroups 2000      # as root, on this machine's cgroup v1 memory hierarchy

`--live-cgroups N` instead creates N real (empty) memory cgroups in the same layout under
/sys/fs/cgroup/memory/kmem-exporter-bench-<id>, times the walk over that subtree on the real cgroup filesystem,
prints the figures scaled to 65,535 cgroups, and removes the cgroups again. Real cgroups cost kernel memory, so
keep N to a few thousand.

`--files real` puts the 31 control files of a real v1 memory cgroup in every directory (2 million files for the
full tree: slower to generate, closer to what a real listing costs); `minimal` puts only the files the walk looks at.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Callable

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT), str(PROJECT / "benchmarks")]

from kmem_exporter.collectors.memcg_walk import WalkCounts, walk_memory_cgroups  # noqa: E402
from memcg_tree import (MEMORY_CGROUP_ID_LIMIT, V1_FILES_MINIMAL, V1_FILES_REAL, cgroup_dirs,  # noqa: E402
                        generate_v1_tree)


def timed(passes: int, walk: Callable[[], WalkCounts]) -> tuple[list[float], list[float], WalkCounts]:
    """Wall-clock and CPU (user + system) seconds of each of `passes` walks, and the last walk's counts."""
    times, cpu, counts = [], [], WalkCounts()
    for _ in range(passes):
        started, cpu_started = time.perf_counter(), time.process_time()
        counts = walk()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return times, cpu, counts


def traced_peak(walk: Callable[[], WalkCounts]) -> int:
    tracemalloc.start()
    try:
        walk()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def live_benchmark(total: int, passes: int) -> None:
    """Time the walk over `total` real memory cgroups created for the purpose, then remove them."""
    memory = Path("/sys/fs/cgroup/memory")
    root = memory / f"kmem-exporter-bench-{os.getpid()}"
    root.mkdir()
    created: list[Path] = []
    try:
        started = time.perf_counter()
        for relative in cgroup_dirs(total):
            (root / relative).mkdir()
            created.append(root / relative)
        print(f"created {total} real memory cgroups under {root} ({time.perf_counter() - started:.1f}s)")
        for mode, probe in (("always", False), ("per-cgroup", True)):
            times, cpu, counts = timed(passes, lambda: walk_memory_cgroups(root, probe_kmem=probe))
            scale = MEMORY_CGROUP_ID_LIMIT / counts.visible
            print(f"mode={mode:<10} visible={counts.visible} pass_seconds min={min(times):.3f} "
                  f"median={statistics.median(times):.3f} cpu_seconds median={statistics.median(cpu):.3f}; "
                  f"scaled to {MEMORY_CGROUP_ID_LIMIT} cgroups: median={statistics.median(times) * scale:.2f}s")
    finally:
        for path in reversed(created):
            path.rmdir()
        root.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cgroups", type=int, default=MEMORY_CGROUP_ID_LIMIT,
                        help="cgroups in the tree, root included")
    parser.add_argument("--files", choices=("minimal", "real"), default="minimal", help="control files per cgroup")
    parser.add_argument("--passes", type=int, default=3, help="timed passes per mode")
    parser.add_argument("--dir", default=None, help="where to create the temporary tree (default: $TMPDIR)")
    parser.add_argument("--live-cgroups", type=int, default=0,
                        help="time the walk on N real memory cgroups of this machine instead (root only)")
    args = parser.parse_args()
    if args.live_cgroups:
        live_benchmark(args.live_cgroups, args.passes)
        return

    workdir = Path(tempfile.mkdtemp(prefix="memcg-walk-", dir=args.dir))
    try:
        root = workdir / "memory"
        started = time.perf_counter()
        files = V1_FILES_REAL if args.files == "real" else V1_FILES_MINIMAL
        generate_v1_tree(root, args.cgroups, files)
        print(f"generated {args.cgroups} cgroups with {len(files)} files each in {workdir} "
              f"({time.perf_counter() - started:.1f}s)")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        modes: dict[str, Callable[[], WalkCounts]] = {
            "always": lambda: walk_memory_cgroups(root),
            "per-cgroup": lambda: walk_memory_cgroups(root, probe_kmem=True),
        }
        for mode, walk in modes.items():
            times, cpu, counts = timed(args.passes, walk)
            peak = traced_peak(walk)
            print(f"mode={mode:<10} visible={counts.visible} kmem_enabled={counts.kmem_enabled} "
                  f"pass_seconds min={min(times):.3f} median={statistics.median(times):.3f} max={max(times):.3f} "
                  f"cpu_seconds median={statistics.median(cpu):.3f} peak_python_alloc_kib={peak / 1024:.0f}")
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"process peak RSS {rss_after} KiB (grew {rss_after - rss_before} KiB during the walks)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
