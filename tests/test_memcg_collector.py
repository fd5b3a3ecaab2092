"""The memcg collector on fixture trees of v1, hybrid and v2 hosts: counts, hierarchy and accounting-mode detection,
kmem probing with injected EIO, directories vanishing mid-walk, failures, and the background pass behind a scrape."""

from __future__ import annotations

import errno
import importlib.util
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import (FIXTURES, PROJECT, fixture_flags, promtool_check_metrics, run_exporter, scrape_fixture,
                      scrape_fixture_ok, scrape_ok, wait_for)
from metrics_text import collector_success, only_collectors, series_values, value
from kmem_exporter.collectors import memcg as memcg_module
from kmem_exporter.collectors import memcg_walk
from kmem_exporter.collectors.errors import CollectorError
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.collectors.memcg import MemcgCollector, MemcgPass
from kmem_exporter.config import Config
from kmem_exporter.parsers.cgroups import parse_cgroup_stat

ONLY_MEMCG = only_collectors("memcg")

# host -> (hierarchy, mode, in use, visible, dying, kmem enabled, IDs in use)
# IDs in use: 3.10 counts the dying cgroups (in use); 6.18 only the online ones (visible).
EXPECTED = {
    "rhel7-fragmented": ("v1", "per-cgroup", 2917, 40, 2877, 39, 2917),
    "rhel7-healthy": ("v1", "per-cgroup", 37, 34, 3, 33, 37),
    "memcg-near-exhausted": ("v1", "per-cgroup", 64000, 22, 63978, 21, 64000),
    "live-6.18": ("v1", "always", 20, 10, 10, 9, 10),
    "memcg-dying-6.18": ("v1", "always", 63988, 10, 63978, 9, 10),  # memcg-near-exhausted's dying cgroups on 6.18
    "cgroup2-6.18": ("v2", "always", 37, 29, 5, 28, 29),
}


def config_for(root: Path, **extra: str) -> Config:
    return Config.from_values({"path.procfs": str(root / "proc"), "path.sysfs": str(root / "sys"), **extra})


def refresh(root: Path) -> MemcgPass:
    return MemcgCollector(config_for(root)).refresh(KernelFiles(1 << 20))


def copy_fixture(host: str, tmp_path: Path) -> Path:
    target = tmp_path / host
    shutil.copytree(FIXTURES / host, target, symlinks=True)
    return target


@pytest.mark.parametrize("host", sorted(EXPECTED))
def test_scrape_fixture(host: str) -> None:
    exposition = scrape_fixture_ok(host, *ONLY_MEMCG)
    hierarchy, mode, in_use, visible, dying, kmem, ids = EXPECTED[host]
    assert value(exposition, "kmem_memcg_cgroups") == in_use
    assert value(exposition, "kmem_memcg_ids_in_use") == ids
    assert value(exposition, "kmem_memcg_id_limit") == 65535
    assert value(exposition, "kmem_memcg_visible_cgroups") == visible
    assert value(exposition, "kmem_memcg_dying_cgroups") == dying
    assert value(exposition, "kmem_memcg_kmem_enabled_cgroups") == kmem
    assert value(exposition, "kmem_memcg_kmem_accounting_info", mode=mode) == 1
    assert value(exposition, "kmem_memcg_hierarchy_info", hierarchy=hierarchy) == 1
    modes = [labels for (name, labels) in series_values(exposition) if name == "kmem_memcg_kmem_accounting_info"]
    assert len(modes) == 1
    assert value(exposition, "kmem_background_pass_duration_seconds", collector="memcg") >= 0
    assert value(exposition, "kmem_background_pass_timestamp_seconds", collector="memcg") > 1.6e9
    assert promtool_check_metrics(exposition) == ""


@pytest.mark.parametrize("release, ids_in_use, limit", [
    ("3.10.0-1160.el7.x86_64", 37, 65535),  # a dying cgroup keeps its (CSS) ID until it is freed: num_cgroups
    ("4.6.7-300.fc24.x86_64", 37, 65535),
    ("4.7.0-1.el7.elrepo.x86_64", 34, 65534),  # released at removal (73f576c04b94): the online cgroups; the
    ("5.10.0-32-amd64", 34, 65534),            # memory controller's own IDs, 65535 never handed out
    ("5.17.15-1.el8.elrepo.x86_64", 34, 65534),
    ("5.18.0-4-amd64", 34, 65535),  # "mm: memcontrol: fix cannot alloc the maximum memcg ID"
    ("6.1.0-28-amd64", 34, 65535),
])
def test_ids_in_use_and_the_limit_follow_the_kernel_release(tmp_path: Path, release: str, ids_in_use: int,
                                                            limit: int) -> None:
    """The same v1 tree (34 visible, 3 dying): before 4.7 the dying cgroups hold IDs, from 4.7 on they do not; and
    kernels from 4.7 to 5.17 hand out one ID fewer."""
    root = copy_fixture("rhel7-healthy", tmp_path)
    (root / "proc/sys/kernel/osrelease").write_text(release + "\n")
    result = refresh(root)
    assert (result.in_use, result.visible, result.dying) == (37, 34, 3)
    assert result.ids_in_use == ids_in_use
    assert result.id_limit == limit
    exposition = scrape_ok(f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}", *ONLY_MEMCG)
    assert value(exposition, "kmem_memcg_id_limit") == limit


def test_ids_in_use_on_a_modern_kernel_ignore_dying_cgroups(tmp_path: Path) -> None:
    """6.18, v1: 60,000 dying cgroups (num_cgroups 60,010) leave the IDs in use at the 10 online ones."""
    root = copy_fixture("live-6.18", tmp_path)
    proc_cgroups = root / "proc/cgroups"
    proc_cgroups.write_text(proc_cgroups.read_text().replace("memory\t4\t20\t1", "memory\t4\t60010\t1"))
    result = refresh(root)
    assert (result.in_use, result.visible, result.dying, result.ids_in_use) == (60010, 10, 60000, 10)


def served_ids_in_use(collector: MemcgCollector) -> float:
    families = {family.name: family for family in collector.collect(KernelFiles(1 << 20))}
    return families["kmem_memcg_ids_in_use"].samples[0].value


def test_v2_ids_in_use_are_read_at_the_scrape_where_cgroup_stat_counts_memory_cgroups(tmp_path: Path) -> None:
    """6.18 counts the live memory cgroups in the root's cgroup.stat (nr_subsys_memory): a scrape serves that count
    as it is then, not the latest walk's, which can be minutes old on a large tree."""
    root = copy_fixture("cgroup2-6.18", tmp_path)
    collector = MemcgCollector(config_for(root))
    collector.refresh_once()
    assert served_ids_in_use(collector) == 29  # the walk's count and nr_subsys_memory agree
    stat = root / "sys/fs/cgroup/cgroup.stat"
    stat.write_text(stat.read_text().replace("nr_subsys_memory 29", "nr_subsys_memory 40000"))
    assert served_ids_in_use(collector) == 40000  # no walk since
    stat.write_text("".join(line + "\n" for line in stat.read_text().splitlines()
                            if not line.startswith("nr_subsys_") and not line.startswith("nr_dying_subsys_")))
    assert served_ids_in_use(collector) == 29  # a kernel without the count: the walk's
    stat.write_text("nr_descendants 29\nnr_subsys_memory x\n")
    with pytest.raises(CollectorError, match="cgroup.stat"):
        served_ids_in_use(collector)


@pytest.mark.parametrize("release, served", [
    ("3.10.0-1160.el7.x86_64", 50000),  # every memory cgroup holds an ID: /proc/cgroups as of the scrape
    ("5.10.0-32-amd64", 34),  # the online ones: the walk's count, whatever /proc/cgroups says
])
def test_v1_ids_in_use_before_4_7_are_read_at_the_scrape(tmp_path: Path, release: str, served: int) -> None:
    root = copy_fixture("rhel7-healthy", tmp_path)
    (root / "proc/sys/kernel/osrelease").write_text(release + "\n")
    collector = MemcgCollector(config_for(root))
    collector.refresh_once()
    proc_cgroups = root / "proc/cgroups"
    proc_cgroups.write_text(proc_cgroups.read_text().replace("memory\t10\t37\t1", "memory\t10\t50000\t1"))
    assert served_ids_in_use(collector) == served  # no walk since
    if served != 34:
        proc_cgroups.write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t10\n")
        with pytest.raises(CollectorError, match="cgroups"):
            served_ids_in_use(collector)


def test_v1_counts_every_directory(tmp_path: Path) -> None:
    """Adding one container directory to a v1 tree adds one visible cgroup and takes one from the dying."""
    root = copy_fixture("rhel7-healthy", tmp_path)
    before = refresh(root)
    (root / "sys/fs/cgroup/memory/kubepods/besteffort/extra").mkdir()
    after = refresh(root)
    assert before.dying is not None  # v1 counts its dying cgroups
    assert (after.visible, after.dying) == (before.visible + 1, before.dying - 1)


def test_v1_dying_stays_put_while_cgroups_are_created_during_the_walk(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel lab's 5.10 guest: at 250 new cgroups a second the walk saw hundreds created after num_cgroups was
    read, and the dying count served dipped from 2,000 to 1,162 with none freed. num_cgroups is read again after the
    walk, and the count keeps its value while the readings allow it."""
    root = copy_fixture("rhel7-healthy", tmp_path)
    proc_cgroups, parent = root / "proc/cgroups", root / "sys/fs/cgroup/memory/kubepods/besteffort"
    collector = MemcgCollector(config_for(root))
    collector.refresh_once()
    assert served(collector) == {"kmem_memcg_cgroups": 37, "kmem_memcg_visible_cgroups": 34,
                                 "kmem_memcg_dying_cgroups": 3}
    real_walk = memcg_module.walk_memory_cgroups

    def walk_while_creating(*args: Any, **kwargs: Any) -> Any:
        """Five cgroups come during the walk: it sees the first three, num_cgroups after it counts all five."""
        for name in ("n1", "n2", "n3"):
            (parent / name).mkdir()
        counts = real_walk(*args, **kwargs)
        for name in ("n4", "n5"):
            (parent / name).mkdir()
        proc_cgroups.write_text(proc_cgroups.read_text().replace("memory\t10\t37\t1", "memory\t10\t42\t1"))
        return counts

    monkeypatch.setattr(memcg_module, "walk_memory_cgroups", walk_while_creating)
    collector.refresh_once()  # num_cgroups before the walk less the cgroups it saw would be 0
    assert served(collector)["kmem_memcg_dying_cgroups"] == 3
    monkeypatch.setattr(memcg_module, "walk_memory_cgroups", real_walk)
    collector.refresh_once()
    assert served(collector) == {"kmem_memcg_cgroups": 42, "kmem_memcg_visible_cgroups": 39,
                                 "kmem_memcg_dying_cgroups": 3}


def served(collector: MemcgCollector) -> dict[str, float]:
    names = ("kmem_memcg_cgroups", "kmem_memcg_visible_cgroups", "kmem_memcg_dying_cgroups")
    return {family.name: family.samples[0].value for family in collector.collect(KernelFiles(1 << 20))
            if family.name in names}


@pytest.mark.parametrize("before, after, visible, previous, dying", [
    (37, 37, 34, None, 3), (37, 37, 34, 10, 3),  # nothing changed during the walk: exact
    (2002, 2602, 600, 2000, 2000),  # 2 online, 600 created, 598 of them seen: the previous count fits
    (2002, 2602, 600, None, 1402),  # no previous pass: the lower bound, as num_cgroups before the walk gives
    (2002, 2602, 600, 100, 1402), (2002, 2602, 600, 9000, 2002),  # the nearest count the readings allow
    (2002, 2, 2, 2000, 2000), (2002, 2, 2, 0, 0),  # drop_caches freed them during the walk: either side may be
    (5, 5, 9, None, 0),  # never below zero
])
def test_dying_during_walk(before: int, after: int, visible: int, previous: int | None, dying: int) -> None:
    assert memcg_module.dying_during_walk(before, after, visible, previous) == dying


@given(st.integers(0, 70000), st.integers(1, 70000), st.integers(0, 5000), st.data())
def test_dying_is_exact_whatever_the_walk_sees_of_cgroups_created_during_it(dying: int, online: int, created: int,
                                                                         data: st.DataObject) -> None:
    seen = data.draw(st.integers(0, created))
    assert memcg_module.dying_during_walk(dying + online, dying + online + created, online + seen, dying) == dying
    first_pass = memcg_module.dying_during_walk(dying + online, dying + online + created, online + seen, None)
    assert dying - created <= first_pass <= dying or first_pass == 0


def test_v2_counts_only_directories_with_the_memory_controller(tmp_path: Path) -> None:
    root = copy_fixture("cgroup2-6.18", tmp_path)
    cgroupfs = root / "sys/fs/cgroup"
    assert not (cgroupfs / "system.slice/containerd.service/runtime/memory.current").exists()
    before = refresh(root)
    (cgroupfs / "system.slice/containerd.service/runtime/inner").mkdir()  # no memory controller: not counted
    assert refresh(root).visible == before.visible
    with_memory = cgroupfs / "system.slice/cron.service/job"
    with_memory.mkdir()
    (with_memory / "memory.current").write_text("0\n")
    assert refresh(root).visible == before.visible + 1


def test_v2_counts_memory_cgroups_hidden_behind_io(tmp_path: Path) -> None:
    """A parent that enables io but not memory: io depends on memory, so the kernel creates the child's memory
    cgroup (an ID) with its files hidden; the child has io.stat and no memory.current. A threaded child has
    neither (memory is not a threaded controller): no memory cgroup."""
    root = copy_fixture("cgroup2-6.18", tmp_path)
    cgroupfs = root / "sys/fs/cgroup"
    before = refresh(root)
    parent = cgroupfs / "system.slice/cron.service"
    (parent / "cgroup.subtree_control").write_text("io\n")
    hidden = parent / "job"
    hidden.mkdir()
    for name in ("cgroup.procs", "cgroup.subtree_control", "io.max", "io.stat"):
        (hidden / name).write_text("")
    threaded = cgroupfs / "system.slice/ssh.service/threads"
    threaded.mkdir()
    (threaded / "cgroup.type").write_text("threaded\n")
    after = refresh(root)
    assert (after.visible, after.ids_in_use) == (before.visible + 1, before.ids_in_use + 1) == (30, 30)


def test_v2_online_count_is_the_kernels(tmp_path: Path) -> None:
    """The walk finds as many memory cgroups as the kernel's own count of live ones in the root's cgroup.stat
    (nr_subsys_memory, 6.11+, root included)."""
    root = FIXTURES / "cgroup2-6.18"
    stat = parse_cgroup_stat((root / "sys/fs/cgroup/cgroup.stat").read_text())
    assert refresh(root).ids_in_use == refresh(root).visible == stat.subsys["memory"] == 29


def test_v2_dying_falls_back_to_dying_descendants_on_older_kernels(tmp_path: Path) -> None:
    root = copy_fixture("cgroup2-6.18", tmp_path)
    (root / "sys/fs/cgroup/cgroup.stat").write_text("nr_descendants 29\nnr_dying_descendants 7\n")
    assert refresh(root).dying == 7


def test_v2_without_cgroup_stat_exports_no_dying(tmp_path: Path) -> None:
    """Kernels before 4.14 have no cgroup.stat: the dying count is unknown, not zero."""
    root = copy_fixture("cgroup2-6.18", tmp_path)
    (root / "sys/fs/cgroup/cgroup.stat").unlink()
    result = run_exporter("scrape", *fixture_flags("cgroup2-6.18"), f"--path.procfs={root / 'proc'}",
                          f"--path.sysfs={root / 'sys'}", *ONLY_MEMCG)
    assert result.returncode == 0, result.stderr
    assert "kmem_memcg_dying_cgroups" not in result.stdout
    assert value(result.stdout, "kmem_memcg_visible_cgroups") == 29


def test_v2_without_memory_row_counts_visible_plus_dying(tmp_path: Path) -> None:
    """6.x kernels built without cgroup v1 memory support leave memory out of /proc/cgroups."""
    root = copy_fixture("cgroup2-6.18", tmp_path)
    proc_cgroups = root / "proc/cgroups"
    proc_cgroups.write_text("".join(line for line in proc_cgroups.read_text().splitlines(keepends=True)
                                    if not line.startswith("memory")))
    result = refresh(root)
    assert (result.hierarchy, result.in_use, result.visible, result.dying) == ("v2", 34, 29, 5)


def test_hybrid_host_with_memory_on_unified(tmp_path: Path) -> None:
    """A hybrid host that gave the memory controller to cgroup v2: found at <cgroupfs>/unified."""
    root = copy_fixture("cgroup2-6.18", tmp_path)
    cgroupfs = root / "sys/fs/cgroup"
    staging = tmp_path / "v2"
    shutil.move(str(cgroupfs), staging)
    cgroupfs.mkdir()
    shutil.move(str(staging), cgroupfs / "unified")
    (cgroupfs / "systemd").mkdir()
    result = refresh(root)
    assert (result.hierarchy, result.visible, result.dying) == ("v2", 29, 5)


def test_cgroupfs_flag_moves_the_hierarchy(tmp_path: Path) -> None:
    root = copy_fixture("rhel7-healthy", tmp_path)
    moved = tmp_path / "elsewhere"
    shutil.move(str(root / "sys/fs/cgroup"), moved)
    with pytest.raises(CollectorError, match=r"fs/cgroup/memory: not a cgroup v1 memory hierarchy .*hierarchy 10"):
        refresh(root)
    collector = MemcgCollector(config_for(root, **{"path.cgroupfs": str(moved)}))
    assert collector.refresh(KernelFiles(1 << 20)).visible == 34


def test_no_memory_hierarchy_anywhere(tmp_path: Path) -> None:
    root = copy_fixture("live-6.18", tmp_path)
    (root / "proc/cgroups").write_text((root / "proc/cgroups").read_text().replace("memory\t4\t", "memory\t0\t"))
    with pytest.raises(CollectorError, match=r"fs/cgroup: no memory cgroup hierarchy found"):
        refresh(root)


def test_memory_controller_disabled(tmp_path: Path) -> None:
    root = copy_fixture("live-6.18", tmp_path)
    (root / "proc/cgroups").write_text((root / "proc/cgroups").read_text().replace("memory\t4\t20\t1",
                                                                                   "memory\t0\t1\t0"))
    with pytest.raises(CollectorError, match=r"proc/cgroups: the memory controller is disabled"):
        refresh(root)


def boot_with_nokmem(root: Path) -> None:
    cmdline = root / "proc/cmdline"
    cmdline.write_text(cmdline.read_text().rstrip("\n") + " cgroup.memory=nosocket,nokmem\n")


@pytest.mark.parametrize("host, mode, kmem", [("cgroup2-6.18", "disabled", 0), ("live-6.18", "disabled", 0),
                                              ("rhel7-healthy", "per-cgroup", 33)])
def test_nokmem_boot(tmp_path: Path, host: str, mode: str, kmem: int) -> None:
    """cgroup.memory=nokmem turns accounting off on 4.6+ and v2. On 3.10 the per-cgroup probe keeps telling the
    truth whatever the command line says: here cgroups account kernel memory, so the kernel (one before RHEL 7.7)
    ignored the option."""
    root = copy_fixture(host, tmp_path)
    boot_with_nokmem(root)
    result = refresh(root)
    assert (result.mode, result.kmem_enabled) == (mode, kmem)


def test_nokmem_honoured_on_3_10_is_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RHEL 7.7+ backported cgroup.memory=nokmem to 3.10: no cgroup can switch accounting on, so every slabinfo
    read fails with EIO. The probe still runs (it is what tells an honouring kernel from one that ignores the
    option), and finding no cgroup accounting kernel memory, the mode says disabled."""
    root = copy_fixture("rhel7-healthy", tmp_path)
    boot_with_nokmem(root)
    calls = inject_read_errors(monkeypatch, {"": errno.EIO})
    result = refresh(root)
    assert (result.mode, result.kmem_enabled, result.visible, result.dying) == ("disabled", 0, 34, 3)
    assert len(calls) == 33


def test_3_10_without_nokmem_and_no_kmem_cgroup_stays_per_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the option, a 3.10 host whose cgroups all have accounting off could still switch it on."""
    inject_read_errors(monkeypatch, {"": errno.EIO})
    result = refresh(FIXTURES / "rhel7-healthy")
    assert (result.mode, result.kmem_enabled) == ("per-cgroup", 0)


def test_kernel_4_6_is_always(tmp_path: Path) -> None:
    root = copy_fixture("rhel7-healthy", tmp_path)
    (root / "proc/sys/kernel/osrelease").write_text("4.5.7-200.fc23.x86_64\n")
    assert refresh(root).mode == "per-cgroup"
    (root / "proc/sys/kernel/osrelease").write_text("4.6.0-1.el7.elrepo.x86_64\n")
    result = refresh(root)
    assert (result.mode, result.kmem_enabled) == ("always", 33)


# --- kmem probing in per-cgroup mode: EIO injected at the one function that reads memory.kmem.slabinfo ---

def inject_read_errors(monkeypatch: pytest.MonkeyPatch, failing: dict[str, int]) -> list[str]:
    """Make reading memory.kmem.slabinfo fail with the given errno for cgroups whose path ends with a key;
    every other read goes to the real file. Returns the list of paths read."""
    real_read = memcg_walk.read_slabinfo_head
    calls: list[str] = []

    def read(parent_fd: int, name: str, path: str) -> bytes:
        calls.append(path)
        for suffix, code in failing.items():
            if Path(path).parent.as_posix().endswith(suffix):
                raise OSError(code, os.strerror(code), path)
        return real_read(parent_fd, name, path)

    monkeypatch.setattr(memcg_walk, "read_slabinfo_head", read)
    return calls


def pod_dirs(root: Path, qos: str) -> list[Path]:
    return sorted(p for p in (root / "sys/fs/cgroup/memory/kubepods" / qos).iterdir() if p.is_dir())


def test_eio_marks_cgroups_without_kmem_accounting(monkeypatch: pytest.MonkeyPatch) -> None:
    root = FIXTURES / "rhel7-healthy"
    besteffort = pod_dirs(root, "besteffort")
    containers = [c for pod in besteffort for c in pod.iterdir() if c.is_dir()]
    # kubepods, its QoS level and the besteffort pods and containers were created without a kmem limit
    off = ["kubepods", "kubepods/besteffort"] + [p.relative_to(root / "sys/fs/cgroup/memory").as_posix()
                                                  for p in besteffort + containers]
    calls = inject_read_errors(monkeypatch, {suffix: errno.EIO for suffix in off})
    result = refresh(root)
    assert (result.mode, result.visible) == ("per-cgroup", 34)
    assert result.kmem_enabled == 33 - len(off) == 33 - 2 - 5 - 10
    assert len(calls) == 33  # one read per cgroup; the root never accounts kernel memory and is not read
    assert str(root / "sys/fs/cgroup/memory/memory.kmem.slabinfo") not in calls


def test_all_cgroups_without_kmem(monkeypatch: pytest.MonkeyPatch) -> None:
    inject_read_errors(monkeypatch, {"": errno.EIO})
    result = refresh(FIXTURES / "memcg-near-exhausted")
    assert (result.kmem_enabled, result.visible, result.dying) == (0, 22, 63978)


def test_other_read_errors_fail_the_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    inject_read_errors(monkeypatch, {"kubepods/burstable": errno.EACCES})
    with pytest.raises(CollectorError, match=r"kubepods/burstable/memory.kmem.slabinfo: permission denied"):
        refresh(FIXTURES / "rhel7-healthy")


def test_walk_closes_every_directory_it_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Also when a pass fails half-way."""
    open_fds = len(os.listdir("/proc/self/fd"))
    memcg_walk.walk_memory_cgroups(FIXTURES / "rhel7-healthy/sys/fs/cgroup/memory", probe_kmem=True)
    inject_read_errors(monkeypatch, {"kubepods/besteffort": errno.EACCES})
    with pytest.raises(CollectorError):
        memcg_walk.walk_memory_cgroups(FIXTURES / "rhel7-healthy/sys/fs/cgroup/memory", probe_kmem=True)
    assert len(os.listdir("/proc/self/fd")) == open_fds


def test_always_mode_reads_no_slabinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = inject_read_errors(monkeypatch, {})
    assert refresh(FIXTURES / "live-6.18").kmem_enabled == 9
    assert calls == []


def test_kernel_without_kmem_accounting_reads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3.10 kernel built without CONFIG_MEMCG_KMEM has no memory.kmem.* files: nothing to probe, none enabled."""
    root = copy_fixture("rhel7-healthy", tmp_path)
    for slabinfo in (root / "sys/fs/cgroup/memory").rglob("memory.kmem.slabinfo"):
        slabinfo.unlink()
    calls = inject_read_errors(monkeypatch, {})
    result = refresh(root)
    assert (result.mode, result.visible, result.kmem_enabled, calls) == ("per-cgroup", 34, 0, [])


# --- directories that vanish during the walk ---

def test_cgroup_removed_before_its_slabinfo_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container's directory is removed (for real) between listing it and reading its slabinfo."""
    root = copy_fixture("rhel7-healthy", tmp_path)
    real_read = memcg_walk.read_slabinfo_head
    removed: list[str] = []

    def remove_then_read(parent_fd: int, name: str, path: str) -> bytes:
        directory = Path(path).parent
        if len(removed) < 3 and re.fullmatch(r"[0-9a-f]{64}", directory.name):
            shutil.rmtree(directory)
            removed.append(path)
        return real_read(parent_fd, name, path)

    monkeypatch.setattr(memcg_walk, "read_slabinfo_head", remove_then_read)
    counts = memcg_walk.walk_memory_cgroups(root / "sys/fs/cgroup/memory", probe_kmem=True)
    assert len(removed) == 3
    assert (counts.visible, counts.kmem_enabled, counts.vanished) == (34, 30, 3)


def test_directory_removed_before_it_is_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod's directory is removed (for real) after the walk found it and before the walk lists it."""
    root = copy_fixture("rhel7-healthy", tmp_path)
    pod = pod_dirs(root, "burstable")[0]
    real_read = memcg_walk.read_slabinfo_head

    def read_then_remove(parent_fd: int, name: str, path: str) -> bytes:
        head = real_read(parent_fd, name, path)
        if Path(path).parent == pod:
            shutil.rmtree(pod)
        return head

    monkeypatch.setattr(memcg_walk, "read_slabinfo_head", read_then_remove)
    counts = memcg_walk.walk_memory_cgroups(root / "sys/fs/cgroup/memory", probe_kmem=True)
    assert not pod.exists()
    # the pod was seen (and accounts kernel memory), its two containers never were; one directory vanished
    assert (counts.visible, counts.kmem_enabled, counts.vanished) == (32, 31, 1)


def test_missing_hierarchy_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CollectorError, match=r"/nothing: file not found"):
        memcg_walk.walk_memory_cgroups(tmp_path / "nothing")


# --- failures, the scrape and the background pass ---

def test_truncated_proc_cgroups_fails_only_memcg() -> None:
    result = scrape_fixture("broken-memcg-truncated", *only_collectors("memcg", "buddyinfo", "kernel"))
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"memcg": 0, "buddyinfo": 1, "kernel": 1}
    assert re.search(r"collector=memcg failed: \S*broken-memcg-truncated/proc/cgroups: malformed: line 5: ",
                     result.stderr), result.stderr
    assert "kmem_memcg_" not in result.stdout
    assert promtool_check_metrics(result.stdout) == ""


def test_scrape_serves_the_latest_pass_without_walking(monkeypatch: pytest.MonkeyPatch) -> None:
    """collect() never walks: its cost does not depend on the tree's size."""
    walks: list[Path] = []
    real_walk = memcg_module.walk_memory_cgroups

    def counting_walk(root: Path, member_files: tuple[str, ...] = (), probe_kmem: bool = False) -> Any:
        walks.append(root)
        return real_walk(root, member_files, probe_kmem)

    monkeypatch.setattr(memcg_module, "walk_memory_cgroups", counting_walk)
    collector = MemcgCollector(config_for(FIXTURES / "memcg-near-exhausted"))
    with pytest.raises(CollectorError, match="first background pass has not finished"):
        list(collector.collect(KernelFiles(1 << 20)))
    collector.refresh_once()
    for _ in range(3):
        names = [family.name for family in collector.collect(KernelFiles(1 << 20))]
    assert len(walks) == 1
    assert "kmem_memcg_dying_cgroups" in names and "kmem_background_pass_timestamp_seconds" in names


def test_background_pass_repeats_on_its_interval(exporter_factory) -> None:  # type: ignore[no-untyped-def]
    exporter = exporter_factory(*fixture_flags("memcg-near-exhausted"), *ONLY_MEMCG,
                                "--collector.memcg.interval=200ms")
    first = value(exporter.metrics(), "kmem_background_pass_timestamp_seconds", collector="memcg")
    exposition = wait_for("the background pass to run again", exporter.metrics,
                          lambda e: value(e, "kmem_background_pass_timestamp_seconds", collector="memcg") > first)
    assert value(exposition, "kmem_memcg_dying_cgroups") == 63978
    assert promtool_check_metrics(exposition) == ""


def test_interval_flag_is_validated() -> None:
    result = run_exporter("scrape", "--collector.memcg.interval=soon")
    assert result.returncode == 2
    assert "collector.memcg.interval" in result.stderr


def test_synthetic_tree_generator(tmp_path: Path) -> None:
    """The benchmark's tree generator writes the number of cgroups asked for, and the walk finds them all."""
    spec = importlib.util.spec_from_file_location("memcg_walk_benchmark", PROJECT / "benchmarks" / "memcg_walk.py")
    assert spec is not None and spec.loader is not None
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    total = benchmark.generate_v1_tree(tmp_path / "memory", 1000)
    counts = memcg_walk.walk_memory_cgroups(tmp_path / "memory", probe_kmem=True)
    assert (counts.visible, counts.kmem_enabled, counts.vanished) == (total, total - 1, 0) == (1000, 999, 0)


@pytest.mark.parametrize("interval, duration, pause", [
    ("30s", 0.002, 30.0),  # a small tree: the interval
    ("30s", 0.2, 100.0),  # 500 times the pass: 0.2 % of a core
    ("30s", 0.6, 300.0),  # a crowded node: capped at 5 minutes
    ("10m", 0.6, 600.0),  # a longer interval is kept
])
def test_slow_passes_are_spaced_out(interval: str, duration: float, pause: float) -> None:
    collector = MemcgCollector(config_for(FIXTURES / "live-6.18", **{"collector.memcg.interval": interval}))
    assert collector.pause_after(duration) == pytest.approx(pause)
    collector.refresh_once()  # 10 of 65535 IDs in use: the same
    assert collector.pause_after(duration) == pytest.approx(pause)


@pytest.mark.parametrize("host, pause", [
    ("memcg-near-exhausted", 30.0),  # 64,000 of 65,535 IDs in use: 2% of a core, the interval
    ("rhel7-fragmented", 300.0),  # 2,917: 0.2%, capped at 5 minutes
])
def test_passes_come_closer_when_the_ids_run_short(host: str, pause: float) -> None:
    collector = MemcgCollector(config_for(FIXTURES / host))
    collector.refresh_once()
    assert collector.pause_after(0.6) == pytest.approx(pause)
