"""Every parser in exporter/kmem_exporter/parsers against hostile input: huge and negative numbers, Unicode line
separators, many NUMA nodes, zones, orders and migrate types. Anything may be refused, but only with a ParseError
that says why."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FIXTURES
from fuzzing import parse_or_none
from kmem_exporter.parsers import MAX_NUMA_NODES, ParseError, split_lines
from kmem_exporter.parsers.buddyinfo import parse_buddyinfo
from kmem_exporter.parsers.cgroups import parse_cgroup_stat, parse_controllers, parse_proc_cgroups
from kmem_exporter.parsers.extfrag import parse_index_file
from kmem_exporter.parsers.kernel import parse_cmdline, parse_release, parse_release_string
from kmem_exporter.parsers.kernel_log_patterns import match_event
from kmem_exporter.parsers.kmsg import parse_record, split_records
from kmem_exporter.parsers.netns import mounted_network_namespaces, parse_namespace_link
from kmem_exporter.parsers.pagetypeinfo import parse_pagetypeinfo
from kmem_exporter.parsers.slab_fold import parse_slab_families
from kmem_exporter.parsers.slabinfo import parse_slabinfo
from kmem_exporter.parsers.smaps import parse_kernel_page_size
from kmem_exporter.parsers.sysctl import parse_sysctl_int, parse_sysctl_unsigned
from kmem_exporter.parsers.vmstat import parse_vmstat
from kmem_exporter.parsers.zoneinfo import parse_zoneinfo

LIVE = FIXTURES / "live-6.18"
TEXT_PARSERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "buddyinfo": (parse_buddyinfo, (LIVE / "proc/buddyinfo").read_text()),
    "extfrag": (parse_index_file, (LIVE / "sys/kernel/debug/extfrag/extfrag_index").read_text()),
    "pagetypeinfo": (parse_pagetypeinfo, (LIVE / "proc/pagetypeinfo").read_text()),
    "zoneinfo": (parse_zoneinfo, (LIVE / "proc/zoneinfo").read_text()),
    "vmstat": (parse_vmstat, (LIVE / "proc/vmstat").read_text()),
    "slabinfo": (parse_slabinfo, (LIVE / "proc/slabinfo").read_text()),
    "slab_fold": (parse_slab_families, (FIXTURES / "slab-memcg/proc/slabinfo").read_text()),
    "sysctl": (parse_sysctl_int, "67584\n"),
    "sysctl_unsigned": (parse_sysctl_unsigned, "67584\n"),
    "proc_cgroups": (parse_proc_cgroups, "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t4\t20\t1\n"),
    "cgroup_stat": (parse_cgroup_stat, "nr_descendants 3\nnr_dying_descendants 1\nnr_subsys_memory 4\n"),
    "controllers": (parse_controllers, "cpuset cpu io memory pids\n"),
    "release": (parse_release, "3.10.0-514.el7.x86_64\n"),
    "release_string": (parse_release_string, "3.10.0-514.el7.x86_64\n"),
    "cmdline": (parse_cmdline, 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 "a b" -- init\n'),
    "mountinfo": (mounted_network_namespaces,
                  "44 43 0:4 net:[4026532177] /run/netns/blue rw shared:2 - nsfs nsfs rw\n"),
    "namespace_link": (lambda text: parse_namespace_link(text, "net"), "net:[4026531992]"),
    "page_size": (parse_kernel_page_size, "KernelPageSize:        4 kB"),
    "kernel_log_event": (match_event, "exe: page allocation failure: order:6, mode:0x10c0d0"),
}
HOSTILE = ["-1", "-", str(2**64), str(2**64 - 1), "9" * 25, "9" * 309, "9" * 5000, "\u2028", "\u2029", "\x85", "\x1c",
           "\x1e", "\r", "\x0b", "\x0c", "\x00", "١", "²", "+1", "1_000", "0" * 30 + "1", "\n", "", "Node 5000, zone X"]


def parse_kmsg(text: str) -> object:
    return [parse_record(record) for record in split_records(text.encode("utf-8", errors="replace"))]


TEXT_PARSERS["kmsg"] = (parse_kmsg, "6,1234,5678901,-;exe: page allocation failure: order:6, mode:0x10c0d0\n"
                                    " SUBSYSTEM=net\n")


@pytest.mark.parametrize("parser", sorted(TEXT_PARSERS))
@settings(max_examples=150)
@given(data=st.data())
def test_hostile_edits_raise_only_parse_error(parser: str, data: st.DataObject) -> None:
    parse, sample = TEXT_PARSERS[parser]
    at = data.draw(st.integers(min_value=0, max_value=len(sample)))
    insert = data.draw(st.sampled_from(HOSTILE))
    replace = data.draw(st.booleans())
    parse_or_none(parse, sample[:at] + insert + sample[at + replace:])
    parse_or_none(parse, sample[:at])
    # Every number in the sample made huge or negative in turn.
    tokens = sample.split(" ")
    index = data.draw(st.integers(min_value=0, max_value=len(tokens) - 1))
    tokens[index] = insert + tokens[index] if insert in ("-", "9" * 25) else insert
    parse_or_none(parse, " ".join(tokens))


@pytest.mark.parametrize("parser", sorted(TEXT_PARSERS))
@settings(max_examples=100)
@given(text=st.text(max_size=400))
def test_random_text_raises_only_parse_error(parser: str, text: str) -> None:
    parse_or_none(TEXT_PARSERS[parser][0], text)


# ------------------------------------------------------------------------------------------- lines split on \n only

def test_split_lines_splits_on_newline_only() -> None:
    assert split_lines("a\u2028b\x85c\rd\x1ce\n\nf\n") == ["a\u2028b\x85c\rd\x1ce", "", "f"]
    assert split_lines("") == [] and split_lines("\n") == [""] and split_lines("x") == ["x"]


def test_mount_point_with_a_line_separator_is_one_line() -> None:
    mountinfo = ("44 43 0:4 net:[4026532177] /run/netns/blue\u2028x rw shared:2 - nsfs nsfs rw\n"
                 "45 43 0:4 net:[4026532178] /run/netns/red\x85 rw shared:3 - nsfs nsfs rw\n")
    assert mounted_network_namespaces(mountinfo) == {4026532177, 4026532178}


# ------------------------------------------------------------------------------------------ numbers beyond 64 bits

@pytest.mark.parametrize("parse, text, message", [
    (parse_vmstat, f"nr_free_pages {2**64}\n", "line 1: nr_free_pages does not fit in 64 bits"),
    (parse_vmstat, "nr_free_pages 12\npgfault " + "9" * 309 + "\n", "line 2: pgfault does not fit in 64 bits"),
    (parse_vmstat, "nr_free_pages -5\n", "line 1: nr_free_pages is not a non-negative integer: '-5' (the kernel"),
    (parse_sysctl_int, "9" * 309, "does not fit in 64 bits"),
    (parse_sysctl_int, str(-(2**63) - 1), "does not fit in 64 bits"),
    (parse_sysctl_unsigned, "-1\n", "is not a non-negative integer"),
    (parse_buddyinfo, f"Node 0, zone Normal 1 {2**64} 3\n", "line 1: node 0 zone Normal order 1 does not fit"),
    (parse_buddyinfo, "Node 0, zone Normal 1 -2 3\n", "line 1: node 0 zone Normal order 1 is not a non-negative"),
    (parse_cgroup_stat, f"nr_descendants {2**64}\nnr_dying_descendants 0\n", "line 1: nr_descendants does not fit"),
    (parse_proc_cgroups, f"memory\t4\t{2**64}\t1\n", "line 1: num_cgroups does not fit"),
    (lambda t: parse_namespace_link(t, "net"), f"net:[{2**64}]", "inode number does not fit"),
    (lambda t: parse_record(t.encode()), f"6,{2**64},1,-;text", "seq in header"),
    (lambda t: parse_record(t.encode()), "6,1 ,1,-;text", "non-numeric seq"),
    (parse_release, "9" * 5000 + ".1.0", "expected a kernel release"),
])
def test_values_that_cannot_be_exported_are_refused(parse: Callable[[str], Any], text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message.replace("(", r"\(")):
        parse(text)


def test_largest_values_are_kept() -> None:
    assert parse_vmstat(f"pgfault {2**64 - 1}\n") == {"pgfault": 2**64 - 1}
    assert parse_sysctl_int(f"{-(2**63)}\n") == -(2**63) and parse_sysctl_int(f"{2**64 - 1}") == 2**64 - 1
    assert parse_sysctl_int("-1") == -1  # min_free_kbytes and most vm sysctls are C ints
    assert parse_buddyinfo(f"Node 0, zone Normal {2**64 - 1}\n")[0].free_blocks == (2**64 - 1,)
    assert parse_index_file("Node 0, zone   Normal -1.000  0.931\n")[0].values == (-1000, 931)  # signed


def test_an_order_with_thousands_of_digits_is_other() -> None:
    event = match_event("x: page allocation failure: order:" + "9" * 5000 + ", mode:0x10c0d0")
    assert event is not None and event.order == "other"


# -------------------------------------------------------------------------------------------------- label bounds

def buddy_rows(nodes: int) -> str:
    return "".join(f"Node {n}, zone   Normal 1 2 3\n" for n in range(nodes))


def extfrag_rows(nodes: int) -> str:
    return "".join(f"Node {n}, zone   Normal -1.000 0.500 0.900\n" for n in range(nodes))


def zoneinfo_rows(nodes: int) -> str:
    return "".join(f"Node {n}, zone   Normal\n  pages free     10\n        min      1\n        low      2\n"
                   f"        high     3\n" for n in range(nodes))


def pagetypeinfo_rows(nodes: int) -> str:
    free = "".join(f"Node {n}, zone   Normal, type    Movable      1      2\n" for n in range(nodes))
    blocks = "".join(f"Node {n}, zone   Normal            7\n" for n in range(nodes))
    return ("Page block order: 9\nPages per block:  512\n\nFree pages count per migrate type at order       0      1\n"
            f"{free}\nNumber of blocks type     Movable\n{blocks}")


ROWS: dict[str, tuple[Callable[[str], Any], Callable[[int], str]]] = {
    "buddyinfo": (parse_buddyinfo, buddy_rows),
    "extfrag": (parse_index_file, extfrag_rows),
    "zoneinfo": (parse_zoneinfo, zoneinfo_rows),
    "pagetypeinfo": (parse_pagetypeinfo, pagetypeinfo_rows),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_at_most_1024_numa_nodes(name: str) -> None:
    parse, rows = ROWS[name]
    assert parse(rows(MAX_NUMA_NODES))  # node 1023: the most a kernel can have
    with pytest.raises(ParseError, match=r"NUMA node '1024' is not a node number 0..1023"):
        parse(rows(10_000))


@pytest.mark.parametrize("name", sorted(ROWS))
def test_node_numbers_are_written_as_the_kernel_writes_them(name: str) -> None:
    parse, rows = ROWS[name]
    for bad in ("01", "00"):
        with pytest.raises(ParseError, match=f"NUMA node '{bad}'"):
            parse(rows(1).replace("Node 0,", f"Node {bad},"))


@pytest.mark.parametrize("name", sorted(ROWS))
def test_a_handful_of_zone_names(name: str) -> None:
    parse, rows = ROWS[name]
    many = "".join(rows(1).replace("Normal", f"Zone{z}") for z in range(9))
    if name == "pagetypeinfo":
        many = pagetypeinfo_rows(1).replace("Node 0, zone   Normal, type",
                                            "".join(f"Node 0, zone Zone{z}, type    Movable      1      2\n"
                                                    for z in range(8)) + "Node 0, zone   Normal, type")
    with pytest.raises(ParseError, match="more than 8 distinct zone names"):
        parse(many)


@pytest.mark.parametrize("name", ["buddyinfo", "zoneinfo", "extfrag"])
def test_a_zone_is_listed_once_per_node(name: str) -> None:
    parse, rows = ROWS[name]
    with pytest.raises(ParseError, match="listed twice"):
        parse(rows(2) + rows(1))


def test_at_most_64_orders() -> None:
    assert len(parse_buddyinfo("Node 0, zone Normal" + " 1" * 64 + "\n")[0].free_blocks) == 64
    with pytest.raises(ParseError, match="line 1: 65 orders"):
        parse_buddyinfo("Node 0, zone Normal" + " 1" * 65 + "\n")
    with pytest.raises(ParseError, match="line 1: 65 orders"):
        parse_index_file("Node 0, zone Normal" + " 0.100" * 65 + "\n")
    header = "Free pages count per migrate type at order" + "".join(f" {o}" for o in range(65))
    with pytest.raises(ParseError, match="line 4: 65 orders"):
        parse_pagetypeinfo(pagetypeinfo_rows(1).replace("Free pages count per migrate type at order       0      1",
                                                        header))


def test_at_most_16_migrate_types() -> None:
    types = " ".join(f"Type{t}" for t in range(17))
    text = pagetypeinfo_rows(1).replace("Number of blocks type     Movable", f"Number of blocks type {types}")
    with pytest.raises(ParseError, match="more than 16 distinct migrate types"):
        parse_pagetypeinfo(text)
    free = "".join(f"Node 0, zone   Normal, type    T{t}      1      2\n" for t in range(17))
    with pytest.raises(ParseError, match="more than 16 distinct migrate types"):
        parse_pagetypeinfo(pagetypeinfo_rows(1).replace("Node 0, zone   Normal, type    Movable      1      2\n", free))


def test_vmstat_field_count_is_bounded() -> None:
    with pytest.raises(ParseError, match="more than 4096 fields"):
        parse_vmstat("".join(f"field_{i} 1\n" for i in range(5000)))
