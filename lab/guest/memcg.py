"""Scenario: memory cgroup IDs, in two phases.

1. Dying cgroups (a negative control since Linux 4.7): cgroups are created, entered, made to read one 4 KiB page
   of a sparse file on an ext4 file system (a loop device over guest tmpfs), left and removed. The page cache
   charged to them keeps them dying until the cache is dropped, but since 4.7 (commit 73f576c04b94) a memory cgroup
   gives its ID back when it goes offline, so mkdir goes on working however many are dying.
2. Online cgroups (the real failure): cgroups are created at a steady pace and kept, until mkdir fails at the
   65535-ID limit (root included): ENOSPC, or EBUSY where the IDs come from an xarray (6.12). The dying cgroups of
   phase 1 are still there. Then the remedies: the online cgroups are removed (mkdir works again, the ID alerts
   resolve), then drop_caches frees the dying ones.

On cgroup v1 (5.10, 6.1) the memory hierarchy is mounted at /run/kmem-lab/cgroup/memory; on cgroup v2 (6.12) the
unified root is used. At every check the exporter's counts are compared with /proc/cgroups, cgroup.stat and the
online memory cgroups counted in the cgroup file system.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Optional

from kmem_exporter.collectors.memcg import id_limit
from kmem_exporter.parsers.kernel import parse_release
from lab.guest.harness import WORK, Lab, run, wait_until, write

STRIDE = 64 * 1024  # one page per cgroup, 64 KiB apart; no readahead (POSIX_FADV_RANDOM)
ID_LIMIT = id_limit(parse_release(os.uname().release))  # the IDs this kernel hands out
ID_ALERTS = 'ALERTS{alertname=~"KmemMemcgIds.*",alertstate="firing",lab_rules="scaled"}'
# The exporter's served counts against the kernel's: series name, key in Memcg.truth().
COMPARED = {"kmem_memcg_cgroups": "in_use", "kmem_memcg_dying_cgroups": "dying", "kmem_memcg_ids_in_use": "online"}


def proc_cgroups_memory() -> Optional[int]:
    for line in Path("/proc/cgroups").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "memory":
            return int(fields[2])
    return None


def subdirectories(path: Path) -> list[str]:
    """The names of the directories in path (d_type from the listing: no stat per entry)."""
    with os.scandir(path) as entries:
        return [e.name for e in entries if e.is_dir(follow_symlinks=False)]


class Memcg:
    def __init__(self, lab: Lab, root: Path, hierarchy: str, count: int, batch: int, hold: float,
                 online_rate: Optional[float], online_count: Optional[int] = None) -> None:
        self.lab, self.root, self.hierarchy, self.count, self.batch, self.hold = (
            lab, root, hierarchy, count, batch, hold)
        self.online_rate = online_rate  # new online cgroups a second in phase 2; None: no phase 2
        self.online_count = online_count  # where phase 2 stops; None: when mkdir fails
        self.comparisons = self.mismatches = 0
        self.examples: list[str] = []
        self.parent = self.root / "kmem-lab"
        self.parent.mkdir()
        if hierarchy == "v2":
            write(self.parent / "cgroup.subtree_control", "+memory\n")
        lab.plot = [
            {"title": "memory cgroup IDs in use", "query": "kmem_memcg_ids_in_use"},
            {"title": "memory cgroups (num_cgroups)", "query": "kmem_memcg_cgroups"},
            {"title": "dying memory cgroups", "query": "kmem_memcg_dying_cgroups"},
            {"title": "online (visible) memory cgroups", "query": "kmem_memcg_visible_cgroups"},
        ]
        if online_rate is None:
            lab.plot.append({"title": "kmem-enabled memory cgroups", "query": "kmem_memcg_kmem_enabled_cgroups"})

    def online(self) -> int:
        """The memory cgroups in the file system, root included: every directory on v1, those with the memory
        controller on v2 (every child of kmem-lab has it: kmem-lab enables it for them)."""
        count = 1
        for name in subdirectories(self.root):
            path = self.root / name
            if path == self.parent:
                count += 1 + len(subdirectories(path))
            elif self.hierarchy == "v1":
                count += 1 + sum(1 for below in path.rglob("*") if below.is_dir())
            else:
                count += sum(1 for _ in path.rglob("memory.current"))
        return count

    def truth(self) -> dict[str, int]:
        """The kernel's own counts: /proc/cgroups (v1; v2 where it lists memory), cgroup.stat (v2), and the online
        memory cgroups in the file system."""
        counts = {"online": self.online()}
        listed = proc_cgroups_memory()
        if listed is not None:
            counts["in_use"] = listed
        if self.hierarchy == "v2":
            stat = dict(line.split() for line in (self.root / "cgroup.stat").read_text().splitlines())
            dying = int(stat.get("nr_dying_subsys_memory", stat["nr_dying_descendants"]))
            counts["dying"] = dying
            counts.setdefault("in_use", 1 + int(stat["nr_descendants"]) + dying)
        else:
            counts["dying"] = counts["in_use"] - counts["online"]
        return counts

    def compare(self) -> dict[str, int]:
        """The exporter's counts (a collection started now) against the kernel's counts read before and after it
        (compared only when those two agree)."""
        before = self.truth()
        samples = self.lab.scrape_once("memcg")
        after = self.truth()
        if before == after:
            for series, key in COMPARED.items():
                self.comparisons += 1
                if samples.get(series) != before[key]:
                    self.mismatches += 1
                    if len(self.examples) < 5:
                        self.examples.append(f"{series}: kernel {before[key]}, exporter {samples.get(series)}")
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

    def hold_and_compare(self) -> None:
        end = time.time() + self.hold
        while time.time() < end:
            self.compare()
            time.sleep(2)

    def mkdir_works(self) -> str:
        again = self.parent / "probe"
        try:
            again.mkdir()
            again.rmdir()
            return "ok"
        except OSError as error:
            return str(error)

    def run(self) -> None:
        self.dying_phase()
        self.hold_and_compare()
        if self.online_rate is not None:
            self.online_phase(self.online_rate, self.online_count)
        before = self.compare()
        self.lab.mark("drop_caches")
        write("/proc/sys/vm/drop_caches", "3\n")
        after = self.settle(300)
        self.compare()
        self.lab.measures["drop_caches"] = {"dying_before": before["dying"], "dying_after": after["dying"],
                                            "in_use_before": before["in_use"], "in_use_after": after["in_use"],
                                            "mkdir_after": self.mkdir_works()}
        self.lab.check("drop_caches frees the dying cgroups held by page cache",
                       after["dying"] < before["dying"] / 10, f"dying {before['dying']} -> {after['dying']}")
        self.hold_and_compare()
        self.lab.check("the exporter's counts equal the kernel's at every pass",
                       self.mismatches == 0 and self.comparisons > 0,
                       f"{self.comparisons} compared, {self.mismatches} differ " + "; ".join(self.examples))
        samples = self.lab.scrape()
        self.lab.measures["kmem_enabled"] = samples.get("kmem_memcg_kmem_enabled_cgroups")
        self.lab.measures["accounting"] = [s for s in samples if s.startswith("kmem_memcg_kmem_accounting_info")]

    def dying_phase(self) -> None:
        """Phase 1: count cgroups created, charged one page of page cache each, and removed (they stay dying)."""
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
        with open(pages, "wb") as f:  # sparse: one page for every cgroup, none read twice
            f.truncate(self.count * STRIDE)
        fd = os.open(pages, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        me = str(os.getpid()).encode()
        home = os.open(self.root / "cgroup.procs", os.O_WRONLY)
        self.compare()
        lab.mark("churn")
        made, failure = 0, None
        while made < self.count and failure is None:
            for _ in range(min(self.batch, self.count - made)):
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
            self.compare()
        os.close(fd)
        os.close(home)
        counts = self.truth()
        lab.measures["dying_phase"] = {"created": made, **counts}
        lab.check(f"{self.count} cgroups created and removed, mkdir never failing (dying cgroups hold no ID)",
                  failure is None and made == self.count, f"{made} of {self.count}; {failure}; {counts}")

    def online_phase(self, rate: float, target: Optional[int]) -> None:
        """Phase 2: cgroups created rate a second and kept online until mkdir fails (or, in the CI pass, until
        target are online); then they are removed.

        The ramp is steady: no check pauses it (a pause would give the alerts' `for:` time the field would not).
        The kernel's count is recorded every second for the margins; the checks compare before and after it."""
        lab = self.lab
        base = self.compare()["online"]
        started = lab.mark("online")
        made, failure = 0, None
        timeline = lab.measures["online_timeline"] = [[started, base]]  # [time, online memory cgroups]
        limit = target or ID_LIMIT + 10
        while failure is None and made < limit:
            due = max(1, int(rate * (time.time() - started + 0.1)) - made)  # due in the next 0.1 s
            for _ in range(min(due, limit - made)):  # behind the pace (mkdir slows as cgroups pile up): catch up
                try:
                    os.mkdir(self.parent / f"o{made}")
                except OSError as error:
                    failure = error
                    break
                made += 1
                if time.time() - timeline[-1][0] >= 1:  # every second, catching up included
                    timeline.append([time.time(), base + made])
            time.sleep(max(0.0, started + made / rate - time.time()))
        timeline.append([time.time(), base + made])
        if failure is None:
            counts = self.compare()
            lab.measures["online_reached"] = {"created_online": made, **counts}
            lab.check(f"{made} cgroups kept online below the ID limit (the CI pass's smaller count)",
                      target is not None and counts["online"] == base + made, f"{made} of {target}; {counts}")
        else:
            lab.mark("failure")
            at_failure = self.settle(120)  # the failed mkdir's cgroup is freed asynchronously
            lab.measures["at_failure"] = {"created_online": made, "seconds": round(lab.marks["failure"] - started),
                                          "rate": round(made / (lab.marks["failure"] - started), 1),
                                          **at_failure, "errno": errno.errorcode.get(failure.errno or 0, "?")}
            # ENOSPC from the IDR the IDs came from; EBUSY once they come from an xarray (xa_alloc), as on 6.12.
            lab.check(f"mkdir fails (ENOSPC, or EBUSY) when the online memory cgroups reach the kernel's limit of "
                      f"{ID_LIMIT} IDs",
                      target is None and failure.errno in (errno.ENOSPC, errno.EBUSY)
                      and at_failure["online"] == ID_LIMIT, f"{failure}; {at_failure}")
        self.hold_and_compare()
        removing = lab.mark("remove_online")
        for name in subdirectories(self.parent):
            os.rmdir(self.parent / name)
        rmdir_seconds = round(time.time() - removing, 1)
        removed = self.settle(300)
        works = self.mkdir_works()
        try:
            wait_until(lambda: lab.query(f"count({ID_ALERTS})") is None, 300, "the ID alerts to resolve", every=1)
            resolved: Optional[float] = round(time.time() - removing, 1)
        except TimeoutError:
            resolved = None
        lab.mark("ids_alerts_resolved")
        lab.measures["remove_online"] = {"rmdir_seconds": rmdir_seconds, "mkdir_after": works,
                                         "alerts_resolved_after": resolved, **removed}
        lab.check("removing the online cgroups: mkdir works again and the ID alerts resolve",
                  works == "ok" and resolved is not None, f"mkdir {works}; alerts resolved after {resolved} s")
