"""Scenario: memory cgroups created and removed while page cache stays charged to them, until mkdir fails with
ENOSPC at the 65535-ID limit (or a smaller count in the CI pass); then the runbook's remedy, drop_caches.

Each cgroup reads one 4 KiB page of a sparse file on an ext4 file system (a loop device over guest tmpfs), so
the page cache charged to it keeps it dying after rmdir until the cache is dropped. On cgroup v1 (5.10, 6.1) the
memory hierarchy is mounted at /run/kmem-lab/cgroup/memory; on cgroup v2 (6.12) the unified root is used.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Optional

from lab.guest.harness import WORK, Lab, run, wait_until, write

STRIDE = 64 * 1024  # one page per cgroup, 64 KiB apart; no readahead (POSIX_FADV_RANDOM)
ID_LIMIT = 65535
PAGES = 2 * ID_LIMIT  # the full run goes on to twice the limit when mkdir does not fail


def proc_cgroups_memory() -> Optional[int]:
    for line in Path("/proc/cgroups").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "memory":
            return int(fields[2])
    return None


class Memcg:
    def __init__(self, lab: Lab, root: Path, hierarchy: str, count: Optional[int], batch: int, hold: float) -> None:
        self.lab, self.root, self.hierarchy, self.count, self.batch, self.hold = (
            lab, root, hierarchy, count, batch, hold)
        self.comparisons = self.mismatches = 0
        self.examples: list[str] = []
        self.parent = self.root / "kmem-lab"
        self.parent.mkdir()
        if hierarchy == "v2":
            write(self.parent / "cgroup.subtree_control", "+memory\n")
        lab.plot = [
            {"title": "memory cgroups in use", "query": "kmem_memcg_cgroups"},
            {"title": "dying memory cgroups", "query": "kmem_memcg_dying_cgroups"},
            {"title": "visible memory cgroups", "query": "kmem_memcg_visible_cgroups"},
            {"title": "kmem-enabled memory cgroups", "query": "kmem_memcg_kmem_enabled_cgroups"},
        ]

    def truth(self) -> dict[str, int]:
        """The kernel's own counts: /proc/cgroups (v1; v2 where it lists memory) and cgroup.stat (v2)."""
        counts = {}
        listed = proc_cgroups_memory()
        if listed is not None:
            counts["in_use"] = listed
        visible = 1 + sum(1 for entry in self.parent.iterdir() if entry.is_dir()) + 1  # root, kmem-lab, children
        if self.hierarchy == "v2":
            stat = dict(line.split() for line in (self.root / "cgroup.stat").read_text().splitlines())
            dying = int(stat.get("nr_dying_subsys_memory", stat["nr_dying_descendants"]))
            counts["dying"] = dying
            counts.setdefault("in_use", 1 + int(stat["nr_descendants"]) + dying)
        else:
            counts["dying"] = counts["in_use"] - visible
        return counts

    def compare(self) -> dict[str, int]:
        """The exporter's counts (a collection started now) against the kernel's counts read before and after it
        (compared only when those two agree)."""
        before = self.truth()
        samples = self.lab.scrape_once("memcg")
        after = self.truth()
        if before == after:
            ours = {"in_use": samples.get("kmem_memcg_cgroups"), "dying": samples.get("kmem_memcg_dying_cgroups")}
            for key, value in before.items():
                self.comparisons += 1
                if ours.get(key) != value:
                    self.mismatches += 1
                    if len(self.examples) < 5:
                        self.examples.append(f"{key}: kernel {value}, exporter {ours.get(key)}")
        return after

    def settle(self, seconds: float) -> dict[str, int]:
        """The counts once they have stopped changing for 5 s (freeing is asynchronous), within seconds."""
        history: list[tuple[float, dict[str, int]]] = []

        def steady() -> bool:
            history.append((time.time(), self.truth()))
            same = [t for t, c in history if c == history[-1][1]]
            return history[-1][0] - same[0] >= 5 and all(c == history[-1][1] for t, c in history if t >= same[0])
        wait_until(steady, seconds, "memory cgroup counts to settle", every=1)
        return history[-1][1]

    def run(self) -> None:
        lab = self.lab
        disk = WORK / "disk.img"
        disk.write_bytes(b"")
        os.truncate(disk, 256 << 20)
        run("mkfs.ext4", "-q", "-F", str(disk))
        mount = WORK / "ext4"
        mount.mkdir()
        run("modprobe", "loop")
        run("mount", "-o", "loop", str(disk), str(mount))
        pages = mount / "pages"
        with open(pages, "wb") as f:  # sparse: one page for every cgroup the run may create, none read twice
            f.truncate(PAGES * STRIDE)
        fd = os.open(pages, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        me = str(os.getpid()).encode()
        home = os.open(self.root / "cgroup.procs", os.O_WRONLY)
        self.compare()
        lab.mark("churn")
        made, failure = 0, None
        target = self.count or ID_LIMIT * 2
        while made < target and failure is None:
            for _ in range(min(self.batch, target - made)):
                path = self.parent / f"c{made}"
                try:
                    os.mkdir(path)
                except OSError as error:
                    failure = error
                    break
                procs = os.open(path / "cgroup.procs", os.O_WRONLY)
                os.write(procs, me)
                os.close(procs)
                os.pread(fd, 4096, made * STRIDE)
                os.write(home, me)
                os.rmdir(path)
                made += 1
            if failure is None:
                self.compare()
        if failure is not None:
            lab.mark("failure")
            at_failure = self.truth()
            lab.measures["at_failure"] = {"created": made, **at_failure, "errno": errno.errorcode[failure.errno or 0]}
            lab.check("mkdir fails with ENOSPC at the 65535-ID limit",
                      failure.errno == errno.ENOSPC and at_failure["in_use"] == ID_LIMIT,
                      f"{failure}; {at_failure}")
        else:
            # Since Linux 4.7 a removed memory cgroup gives its ID back when it goes offline (unless swap entries
            # still name it), so dying cgroups do not exhaust the IDs: mkdir goes on working. Recorded as it is.
            lab.measures["created"] = made
            lab.measures["mkdir_never_failed"] = {"created": made, **self.truth()}
            lab.check(f"{made} cgroups created and removed", made == target, f"{made} of {target}")
        end = time.time() + self.hold
        while time.time() < end:
            self.compare()
            time.sleep(2)
        before = self.compare()
        lab.mark("drop_caches")
        write("/proc/sys/vm/drop_caches", "3\n")
        after = self.settle(300)
        self.compare()
        lab.measures["drop_caches"] = {"dying_before": before["dying"], "dying_after": after["dying"],
                                       "in_use_before": before["in_use"], "in_use_after": after["in_use"]}
        again = self.parent / "after-remedy"
        try:
            again.mkdir()
            again.rmdir()
            lab.measures["drop_caches"]["mkdir_after"] = "ok"
        except OSError as error:
            lab.measures["drop_caches"]["mkdir_after"] = str(error)
        lab.check("drop_caches frees the dying cgroups held by page cache", after["dying"] < before["dying"] / 10,
                  f"dying {before['dying']} -> {after['dying']}")
        end = time.time() + self.hold
        while time.time() < end:
            self.compare()
            time.sleep(2)
        lab.check("the exporter's counts equal the kernel's at every pass", self.mismatches == 0 and self.comparisons > 0,
                  f"{self.comparisons} compared, {self.mismatches} differ " + "; ".join(self.examples))
        samples = lab.scrape()
        mode = [s for s in samples if s.startswith("kmem_memcg_kmem_accounting_info")]
        lab.measures["kmem_enabled"] = samples.get("kmem_memcg_kmem_enabled_cgroups")
        lab.measures["accounting"] = mode
        os.close(fd)
