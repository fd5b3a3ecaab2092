"""The memcg collector on this machine's real cgroup v1 memory hierarchy (needs root): real cgroups are created,
charged and removed under /sys/fs/cgroup/memory, and the exporter's counts are checked against /proc/cgroups and
an independent count of the directories. Everything the tests create is removed afterwards.

Other processes may create and remove cgroups at any time, so counts are compared only in windows where neither
/proc/cgroups nor the directory count changed while the exporter ran.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import is_root, promtool_check_metrics, require_tool, scrape_ok
from metrics_text import only_collectors, value
from kmem_exporter.collectors.memcg_walk import walk_memory_cgroups
from kmem_exporter.parsers.kernel import parse_release
from kmem_exporter.parsers.cgroups import parse_proc_cgroups

pytestmark = pytest.mark.live

MEMORY = Path("/sys/fs/cgroup/memory")
ATTEMPTS = 20


def require_root() -> None:
    if not is_root():
        pytest.fail("the live memcg tests create memory cgroups and mount a tmpfs: run them as root")
    if not (MEMORY / "memory.usage_in_bytes").is_file():
        pytest.fail(f"{MEMORY} is not a cgroup v1 memory hierarchy on this machine")


def memory_cgroups_in_use() -> int:
    return parse_proc_cgroups(Path("/proc/cgroups").read_text())["memory"].num_cgroups


def directories(root: Path) -> int:
    """The memory cgroup directories, counted independently of the exporter."""
    return sum(1 for _ in os.walk(root))


def snapshot() -> tuple[int, int]:
    return memory_cgroups_in_use(), directories(MEMORY)


def scrape_live() -> str:
    return scrape_ok(*only_collectors("memcg"))


def counts(exposition: str) -> tuple[int, int, int]:
    return (int(value(exposition, "kmem_memcg_cgroups")), int(value(exposition, "kmem_memcg_visible_cgroups")),
            int(value(exposition, "kmem_memcg_dying_cgroups")))


def stable_scrape() -> tuple[tuple[int, int], str]:
    """A live scrape taken while no cgroup was created or removed, with the counts of that moment."""
    for _ in range(ATTEMPTS):
        before = snapshot()
        exposition = scrape_live()
        if snapshot() == before:
            return before, exposition
    pytest.fail(f"memory cgroups changed during each of {ATTEMPTS} scrapes")


def remove_cgroup_tree(top: Path) -> None:
    """Move any process back to the root cgroup, then remove the directories bottom-up."""
    for dirpath, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
        procs = Path(dirpath) / "cgroup.procs"
        for pid in procs.read_text().split() if procs.exists() else ():
            try:
                (MEMORY / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # exited meanwhile
        os.rmdir(dirpath)


@pytest.fixture
def test_cgroup() -> Iterator[Path]:
    require_root()
    path = MEMORY / f"kmem-exporter-test-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    try:
        yield path
    finally:
        if path.exists():
            remove_cgroup_tree(path)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of our own: its pages and inodes are freed when it is unmounted, which lets the kernel free the
    memory cgroups they were charged to."""
    require_root()
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    subprocess.run([require_tool("mount"), "-t", "tmpfs", "-o", "size=64m", "kmem-exporter-test", str(mountpoint)],
                   check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run([require_tool("umount"), str(mountpoint)], check=True)


def cgroup_directories() -> frozenset[str]:
    """The memory cgroup directories by path, found independently of the exporter."""
    return frozenset(dirpath for dirpath, _, _ in os.walk(MEMORY))


def stable_window() -> tuple[int, frozenset[str], str]:
    """A live scrape taken while /proc/cgroups and the set of cgroup directories stayed the same, with both."""
    for _ in range(ATTEMPTS):
        in_use, dirs = memory_cgroups_in_use(), cgroup_directories()
        exposition = scrape_live()
        if (memory_cgroups_in_use(), cgroup_directories()) == (in_use, dirs):
            return in_use, dirs, exposition
    pytest.fail(f"memory cgroups changed during each of {ATTEMPTS} scrapes")


def observe(change: Callable[[], None], undo: Callable[[], None], added: set[Path], removed: set[Path],
            in_use_change: range) -> tuple[str, str, frozenset[str]]:
    """Expositions before and after `change`, taken when the only cgroups created or removed in between were
    `added` and `removed` (retried, with `undo`, when another process changed the tree meanwhile or the kernel
    freed a dying cgroup), and the directories after."""
    for _ in range(ATTEMPTS):
        in_use_before, dirs_before, before = stable_window()
        change()
        in_use_after, dirs_after, after = stable_window()
        only_ours = (dirs_after - dirs_before == {str(p) for p in added}
                     and dirs_before - dirs_after == {str(p) for p in removed})
        if only_ours and in_use_after - in_use_before in in_use_change:
            return before, after, dirs_after
        undo()
    pytest.fail(f"other cgroups changed around each of {ATTEMPTS} attempts")


def test_live_counts_follow_created_cgroups(test_cgroup: Path) -> None:
    created = [test_cgroup / relative for relative in ("a", "a/x", "a/y", "b", "b/z")]

    def create() -> None:
        for path in created:
            path.mkdir()

    def remove_created() -> None:
        for path in reversed(created):
            path.rmdir()

    # Creating 5 cgroups: 5 more visible and 5 more in use (a new cgroup is allocated at mkdir), none dying.
    before, after, dirs = observe(create, remove_created, set(created), set(), range(5, 6))
    assert walk_memory_cgroups(test_cgroup).visible == 6  # the walk on real cgroupfs: our top cgroup and 5 below
    assert counts(before)[1] == len(dirs) - 5
    in_use, visible, dying = counts(before)
    assert counts(after) == (in_use + 5, visible + 5, dying)
    assert counts(after)[1] == len(dirs)
    assert value(after, "kmem_memcg_kmem_enabled_cgroups") == visible + 5 - 1
    assert value(after, "kmem_memcg_kmem_accounting_info", mode="always") == 1
    assert value(after, "kmem_memcg_hierarchy_info", hierarchy="v1") == 1
    assert promtool_check_metrics(after) == ""

    # Removing a with a/x and a/y: 3 fewer visible. Empty cgroups are freed at once or soon (a dying one is
    # counted as such until then), so in use drops by 3 at most, and what did not drop is dying.
    subtree = created[:3]

    def remove_subtree() -> None:
        for path in reversed(subtree):
            path.rmdir()

    def recreate_subtree() -> None:
        for path in subtree:
            path.mkdir()

    before, after, dirs = observe(remove_subtree, recreate_subtree, set(), set(subtree), range(-3, 1))
    in_use, visible, dying = counts(before)
    in_use_after, visible_after, dying_after = counts(after)
    assert visible_after == visible - 3 == len(dirs)
    assert in_use - 3 <= in_use_after <= in_use
    assert dying_after == dying + 3 - (in_use - in_use_after)
    assert walk_memory_cgroups(test_cgroup).visible == 3


def charge_page_cache(cgroup: Path, data: Path) -> None:
    """Run a shell inside `cgroup` that writes 4 MiB to `data` (page cache charged to the cgroup), then moves
    itself back to the root cgroup."""
    script = (f'echo $$ > "{cgroup}/cgroup.procs" && dd if=/dev/zero of="{data}" bs=64k count=64 status=none'
              f' && echo $$ > "{MEMORY}/cgroup.procs"')
    subprocess.run([require_tool("sh"), "-c", script], check=True)
    assert cgroup.joinpath("cgroup.procs").read_text() == ""
    stat = dict(line.split() for line in cgroup.joinpath("memory.stat").read_text().splitlines())
    assert int(stat["cache"]) >= 4 << 20, stat


def test_live_removed_cgroup_with_page_cache_is_dying(test_cgroup: Path, tmpfs: Path) -> None:
    require_tool("dd")
    for attempt in range(ATTEMPTS):
        cgroup = test_cgroup / f"dying-{attempt}"
        cgroup.mkdir()
        charge_page_cache(cgroup, tmpfs / f"data-{attempt}")
        (in_use, visible), _ = stable_scrape()
        cgroup.rmdir()
        removed = snapshot()
        exposition = scrape_live()
        # Only our removal happened, and the kernel still holds our cgroup: one fewer visible, as many in use.
        if removed == snapshot() == (in_use, visible - 1):
            break
    else:
        pytest.fail("never saw a removed cgroup with charged page cache held by the kernel as dying")
    assert counts(exposition) == (in_use, visible - 1, in_use - visible + 1)
    assert value(exposition, "kmem_memcg_dying_cgroups") >= 1
    # 4.7+ releases a removed cgroup's ID at rmdir: the IDs in use are the online cgroups; before, the dying keep it.
    modern = parse_release(Path("/proc/sys/kernel/osrelease").read_text()) >= (4, 7)
    assert value(exposition, "kmem_memcg_ids_in_use") == (visible - 1 if modern else in_use)
    assert promtool_check_metrics(exposition) == ""
