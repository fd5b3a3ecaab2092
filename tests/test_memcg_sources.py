"""Parsers of /proc/cgroups, cgroup.stat and cgroup.controllers on real formats (v1, hybrid and v2 hosts)."""

from __future__ import annotations

from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import FIXTURES
from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.cgroups import (CgroupStat, Controller, parse_cgroup_stat, parse_controllers,
                                           parse_proc_cgroups)
from fuzzing import parse_or_none


def read(host: str, *parts: str) -> str:
    return FIXTURES.joinpath(host, *parts).read_text()


# The three kinds of host: v1 only (RHEL 7), hybrid (this machine: memory on v1, cgroup2 at unified/), v2 only.
PROC_CGROUPS = {
    "rhel7-fragmented": (12, Controller("memory", 10, 2917, True)),
    "memcg-near-exhausted": (12, Controller("memory", 10, 64000, True)),
    "live-6.18": (12, Controller("memory", 4, 20, True)),
    "memcg-dying-6.18": (12, Controller("memory", 4, 63988, True)),
    "cgroup2-6.18": (12, Controller("memory", 0, 37, True)),
}


@pytest.mark.parametrize("host", sorted(PROC_CGROUPS))
def test_proc_cgroups_fixtures(host: str) -> None:
    controllers = parse_proc_cgroups(read(host, "proc", "cgroups"))
    rows, memory = PROC_CGROUPS[host]
    assert len(controllers) == rows
    assert controllers["memory"] == memory


def test_proc_cgroups_rows_of_this_machine() -> None:
    controllers = parse_proc_cgroups(read("live-6.18", "proc", "cgroups"))
    assert list(controllers) == ["cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "net_cls",
                                 "perf_event", "net_prio", "hugetlb", "pids"]
    assert controllers["net_cls"] == Controller("net_cls", 0, 1, True)
    assert controllers["cpu"] == Controller("cpu", 1, 1, True)


def test_proc_cgroups_disabled_and_absent_memory() -> None:
    # booted with cgroup_disable=memory
    disabled = parse_proc_cgroups("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t0\t1\t1\nmemory\t0\t1\t0\n")
    assert disabled["memory"] == Controller("memory", 0, 1, False)
    # a 6.x kernel built without cgroup v1 memory support leaves the row out
    absent = parse_proc_cgroups("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t0\t88\t1\npids\t0\t88\t1\n")
    assert "memory" not in absent and absent["pids"].num_cgroups == 88


@pytest.mark.parametrize("text, message", [
    ("", "no controllers"),
    ("#subsys_name\thierarchy\tnum_cgroups\tenabled\n", "no controllers"),
    ("#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t4\n", "line 2"),
    ("memory\t4\t20\t2\n", "line 1"),
    ("memory\tfour\t20\t1\n", "line 1"),
    ("memory\t4\t-20\t1\n", "line 1"),
    ("memory\t4\t20\t1\textra\n", "line 1"),
])
def test_proc_cgroups_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_proc_cgroups(text)


def test_cgroup_stat_of_this_machine() -> None:
    stat = parse_cgroup_stat(read("live-6.18", "sys", "fs", "cgroup", "unified", "cgroup.stat"))
    assert stat == CgroupStat(0, 0, {"perf_event": 1, "hugetlb": 1}, {"perf_event": 0, "hugetlb": 0})


def test_cgroup_stat_per_controller_dying_counts() -> None:
    stat = parse_cgroup_stat(read("cgroup2-6.18", "sys", "fs", "cgroup", "cgroup.stat"))
    assert (stat.nr_descendants, stat.nr_dying_descendants) == (29, 7)
    assert stat.subsys["memory"] == 29 and stat.dying_subsys["memory"] == 5
    assert stat.dying("memory") == 5


def test_cgroup_stat_of_older_kernels_has_no_per_controller_counts() -> None:
    stat = parse_cgroup_stat("nr_descendants 143\nnr_dying_descendants 12\n")
    assert stat == CgroupStat(143, 12, {}, {})
    assert stat.dying("memory") == 12  # every dying cgroup: an upper bound


@pytest.mark.parametrize("text", ["", "nr_descendants 3\n", "nr_dying_descendants 3\n",
                                  "nr_descendants 3\nnr_dying_descendants\n", "nr_descendants x\n"])
def test_cgroup_stat_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_cgroup_stat(text)


def test_controllers() -> None:
    assert parse_controllers(read("live-6.18", "sys", "fs", "cgroup", "unified", "cgroup.controllers")) == {"hugetlb"}
    assert parse_controllers(read("cgroup2-6.18", "sys", "fs", "cgroup", "cgroup.controllers")) == {
        "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}
    assert parse_controllers("\n") == frozenset()
    with pytest.raises(ParseError, match="one line"):
        parse_controllers("cpu\nmemory\n")
    with pytest.raises(ParseError, match="not a controller name"):
        parse_controllers("cpu mem/ory\n")


PARSERS = (parse_proc_cgroups, parse_cgroup_stat, parse_controllers)


@pytest.mark.parametrize("parser", PARSERS)
@given(text=st.text())
def test_random_text_raises_only_parse_error(parser: Callable[[str], object], text: str) -> None:
    parse_or_none(parser, text)


@pytest.mark.parametrize("parser, path", [
    (parse_proc_cgroups, ("rhel7-fragmented", "proc", "cgroups")),
    (parse_proc_cgroups, ("cgroup2-6.18", "proc", "cgroups")),
    (parse_cgroup_stat, ("cgroup2-6.18", "sys", "fs", "cgroup", "cgroup.stat")),
])
@given(data=st.data())
def test_truncated_real_files_raise_only_parse_error(parser: Callable[[str], object], path: tuple[str, ...],
                                                     data: st.DataObject) -> None:
    text = read(*path)
    parse_or_none(parser, text[:data.draw(st.integers(min_value=0, max_value=len(text)))])
