"""`kmem-exporter report` as text: the real exporter on fixture trees and this host, and the report package
(exporter/kmem_exporter/report/) on the metric families of real collections. The JSON form, the exit statuses and the
shared thresholds: test_report_data.py; `--from URL`: test_report_from.py."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
from functools import lru_cache
from typing import Any

import pytest
import yaml
from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from conftest import PROJECT, fixture_flags, run_exporter
from metrics_text import only_collectors
from kmem_exporter.cli import collect_once
from kmem_exporter.config import parse_args
from kmem_exporter.report.findings import BUGGY_KMEM_RELEASE, judge
from kmem_exporter.report.state import read_state
from kmem_exporter.report.text import human_bytes, render_text
from kmem_exporter.report.thresholds import thresholds


def render_report(families: list[Metric] | tuple[Metric, ...], failures: dict[str, str]) -> str:
    """The text report of a collection's families, as the command writes it."""
    state = read_state(families, failures)
    return render_text(state, judge(state, thresholds()), thresholds())


def verdict_lines(text: str) -> list[str]:
    """The Verdict section, its wrapped lines joined: one line per finding, then one per runbook."""
    title = next(line for line in text.splitlines() if line.startswith("Verdict"))
    lines: list[str] = [title]
    for line in section(text, "Verdict"):
        if line.startswith("    ") and not line.startswith("    runbook:"):
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


LEAK = ("  WARNING KmemConntrackSlabCacheLeak: 8 nf_conntrack slab caches for 2 live network namespaces: per-namespace "
        "caches leaked (the 3.10 leak); creating a namespace needs a high-order allocation for its cache, which fails "
        "once memory is fragmented")


def report_of(host: str, *extra: str) -> tuple[int, str, str]:
    result = run_exporter("report", *fixture_flags(host), *extra)
    return result.returncode, result.stdout, result.stderr


def fragmentation_table(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """The fragmentation table of a report by (node, zone): each row's cells by column heading."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Fragmentation:")) + 1
    header = lines[start].split()
    rows = {}
    for line in lines[start + 1:]:
        if not re.match(r"  \d", line):
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(header), line
        row = dict(zip(header, cells))
        rows[(row["node"], row["zone"])] = row
    return rows


def section(text: str, title: str) -> list[str]:
    """The lines of one section of a report, without its title line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


# The real exporter, as an operator runs it


def test_fragmented_host() -> None:
    status, out, err = report_of("rhel7-fragmented")
    assert status == 1, err  # warnings
    table = fragmentation_table(out)
    assert set(table) == {("0", "DMA"), ("0", "DMA32"), ("0", "Normal")}
    assert table[("0", "Normal")] == {"node": "0", "zone": "Normal", "free": "261.9 MiB", "largest": "3",
                                      **{str(order): "frag" for order in range(4, 11)}}
    assert table[("0", "DMA32")]["largest"] == "4"
    assert [table[("0", "DMA32")][str(order)] for order in range(4, 11)] == ["yes"] + ["frag"] * 6
    assert table[("0", "DMA")]["6"] == "yes"
    assert "  The limit is vm.extfrag_threshold (500) / 1000; extfrag index: computed from /proc/buddyinfo." in out
    slab = section(out, "Slab")
    assert slab[:3] == ["  largest caches (of 1):", "    nf_conntrack  1.5 MiB",
                        "  nf_conntrack slab caches: 8, live network namespaces: 2"]
    assert "  conntrack table: 1575 of 65536 entries (2.4 %)" in slab
    assert section(out, "Kernel") == ["  release: 3.10.0-514.el7.x86_64", "  memcg kmem accounting: per-cgroup",
                                      "  booted with cgroup.memory=nokmem: no"]
    verdict = verdict_lines(out)
    assert verdict[0] == "Verdict: warning (exit status 1)"
    assert [line.split(":")[0] for line in verdict[1::2]] == [
        "  WARNING KmemHighOrderFragmentation", "  WARNING KmemHighOrderFragmentation",
        "  WARNING KmemHighOrderBlocksRunningOut", "  WARNING KmemHighOrderBlocksRunningOut",
        "  WARNING KmemKmemAccountingOnBuggyKernel", "  WARNING KmemConntrackSlabCacheLeak"]
    assert verdict[1].startswith("  WARNING KmemHighOrderFragmentation: no free block of order 6 or more in zone "
                                 "DMA32 of node 0 (largest: 4); extfrag index 0.974 > 0.500")
    # All free memory in blocks below order 6, with 6.5 and 3.3 times the high watermark free (the alert's state).
    assert verdict[5] == ("  WARNING KmemHighOrderBlocksRunningOut: 100.0% of the free memory of zone DMA32 of node 0 "
                          "is in blocks smaller than order 6 (over 90%), with 6.5 times its high watermark free: "
                          "memory is cut small, not short")
    assert verdict[7].startswith("  WARNING KmemHighOrderBlocksRunningOut: 100.0% of the free memory of zone Normal "
                                 "of node 0 is in blocks smaller than order 6 (over 90%), with 3.3 times")
    assert verdict[6] == "    runbook: docs/runbooks.md#kmemhighorderblocksrunningout"
    assert verdict[11] == LEAK
    assert verdict[12] == "    runbook: docs/runbooks.md#kmemconntrackslabcacheleak"


def test_healthy_host() -> None:
    status, out, err = report_of("rhel7-healthy")
    table = fragmentation_table(out)
    assert table[("0", "Normal")]["6"] == "yes"
    assert table[("0", "Normal")]["largest"] == "9"
    assert [table[("0", "Normal")][str(order)] for order in range(4, 11)] == ["yes"] * 6 + ["frag"]
    assert "  nf_conntrack slab caches: 3, live network namespaces: 3" in out
    assert "leak" not in out
    assert "  IDs in use: 37 of 65535 (0.1 %): 37 cgroups held, 34 visible, 3 dying, 33 kmem-enabled" in out
    # Not fragmented; its 3.10.0-514 kernel leaks memory cgroups with kmem accounting on (fixed in 3.10.0-1075).
    assert status == 1
    assert [line.split(":")[0] for line in verdict_lines(out)] == [
        "Verdict", "  WARNING KmemKmemAccountingOnBuggyKernel", "    runbook"]


def test_numa_nodes_and_zones_in_kernel_order() -> None:
    _, out, _ = report_of("numa4")
    table = fragmentation_table(out)
    assert list(table) == [("0", "DMA"), ("0", "DMA32"), ("0", "Normal"), ("1", "Normal"), ("2", "Normal"),
                           ("2", "Movable"), ("3", "Normal"), ("3", "Movable")]
    assert [table[("2", "Normal")][str(order)] for order in range(4, 11)] == ["yes"] * 3 + ["frag"] * 4
    assert table[("2", "Movable")]["largest"] == "10"
    # Nodes 2 and 3: 99% of Normal's free memory below order 6, but only 1.9 times the high watermark free: memory
    # is short there, not cut small (KmemAllocationStalls' business), so the running-out finding stays away.
    assert "KmemHighOrderBlocksRunningOut" not in out


def test_memcg_ids_nearly_exhausted() -> None:
    status, out, err = report_of("memcg-near-exhausted")
    assert status == 2, err  # critical
    assert section(out, "Memory cgroups") == [
        "  IDs in use: 64000 of 65535 (97.7 %): 64000 cgroups held, 22 visible, 63978 dying, 21 kmem-enabled"]
    verdict = verdict_lines(out)
    assert verdict[0] == "Verdict: critical (exit status 2)"
    assert ("  CRITICAL KmemMemcgIdsCritical: 64000 of 65535 memory cgroup IDs in use (97.7%), over 95% (63978 of "
            "them for dying cgroups, which keep their IDs on kernels before 4.7): when none is left, no container "
            "can start") in verdict
    assert ("  WARNING KmemKmemAccountingOnBuggyKernel: kmem accounting is on for 21 cgroups on kernel "
            "3.10.0-514.el7.x86_64; 3.10 kernels before 3.10.0-1075.el7 never free such cgroups after removal"
            ) in verdict


def test_dying_cgroups_of_a_modern_kernel_take_no_ids() -> None:
    """The same 63978 dying cgroups on 6.18: they released their IDs; only the 10 online cgroups hold one."""
    status, out, err = report_of("memcg-dying-6.18")
    assert status == 0, out + err
    assert section(out, "Memory cgroups") == [
        "  IDs in use: 10 of 65535 (0.0 %): 63988 cgroups held, 10 visible, 63978 dying, 9 kmem-enabled"]
    assert "KmemMemcgIds" not in out


def test_an_exposition_without_ids_in_use_counts_every_cgroup_held() -> None:
    """From an exporter that predates kmem_memcg_ids_in_use, the report takes kmem_memcg_cgroups: too many IDs on
    4.7+, the safe side."""
    families = [f for f in collection("memcg-dying-6.18")[0] if f.name != "kmem_memcg_ids_in_use"]
    text = render_report(families, {})
    assert section(text, "Memory cgroups")[0].startswith("  IDs in use: 63988 of 65535 (97.6 %)")
    assert verdict_lines(text)[1].startswith("  CRITICAL KmemMemcgIdsCritical: 63988 of 65535 memory cgroup IDs")


def test_a_failed_collector_exits_1_and_is_named() -> None:
    status, out, err = report_of("broken-vmstat-truncated", *only_collectors("buddyinfo", "vmstat", "kernel"))
    assert status == 1
    assert out.splitlines()[:3] == [
        "kmem-exporter report",
        "Failed collectors (their parts of the report are missing):",
        f"  vmstat: {PROJECT / 'tests/fixtures/broken-vmstat-truncated/proc/vmstat'}: malformed: line 96: "
        "expected 'NAME VALUE', got 'compact_st'",
    ]
    assert "collector=vmstat failed" in err
    assert fragmentation_table(out)[("0", "Normal")]["6"] == "no"  # no extfrag collector: the reason is unknown
    assert "  no   = fails (no extfrag index to say why)" in out


def test_readme_example_is_the_output() -> None:
    readme = (PROJECT / "README.md").read_text()
    command = ("kmem-exporter report --path.procfs=tests/fixtures/rhel7-fragmented/proc "
               "--path.sysfs=tests/fixtures/rhel7-fragmented/sys")
    assert f"(`{command}`):" in readme
    result = run_exporter(*command.split()[1:])
    assert result.returncode == 1, result.stderr  # warnings
    assert f"```\n{result.stdout}```\n" in readme


def test_help_names_the_command() -> None:
    result = run_exporter("--help")
    assert result.returncode == 0
    assert "kmem-exporter [serve|scrape|report] [flags]" in result.stdout
    text = " ".join(result.stdout.split())
    assert "report collects once and prints the node's verdict" in text
    assert "--format text|json" in text and "--from URL" in text
    assert "Exit status of report: 0 healthy, 1 warning, 2 critical, 3 could not judge." in text


@pytest.mark.live
def test_live_host() -> None:
    result = run_exporter("report")
    assert result.returncode in (0, 1, 2), result.stderr
    titles = [line.split(":")[0] for line in result.stdout.splitlines() if line and not line.startswith(" ")]
    assert titles == ["kmem-exporter report", "Kernel", "Fragmentation", "Slab", "Memory cgroups", "Verdict"]
    assert verdict_lines(result.stdout)[0].endswith(f"(exit status {result.returncode})")
    assert f"  release: {os.uname().release}" in result.stdout
    table = fragmentation_table(result.stdout)
    assert ("0", "Normal") in table
    assert all(row[str(order)] in ("yes", "frag", "low") for row in table.values() for order in range(4, 11))
    assert len(section(result.stdout, "Slab")[1:6]) == 5  # the top five caches
    assert "extfrag index: the kernel's (debugfs extfrag/extfrag_index)" in result.stdout or \
        "extfrag index: computed from /proc/buddyinfo" in result.stdout


# exporter/kmem_exporter/report.py on the families of real collections


@lru_cache(maxsize=None)
def collection(host: str) -> tuple[tuple[Metric, ...], tuple[tuple[str, str], ...]]:
    _, config = parse_args(fixture_flags(host))
    collection = asyncio.run(collect_once(config))
    return tuple(collection.families), tuple(collection.failures.items())


def families_of(host: str, **replaced: list[tuple[dict[str, str], float]]) -> list[Metric]:
    """The families of a collection of a fixture tree, with the samples of the named metrics replaced."""
    families = []
    for family in collection(host)[0]:
        names = {sample.name for sample in family.samples} & set(replaced)
        if names:
            changed = Metric(family.name, family.documentation, family.type)
            changed.samples = [Sample(name, labels, value) for name in names for labels, value in replaced[name]]
            family = changed
        families.append(family)
    return families


def test_report_matches_the_command_output() -> None:
    families, failures = collection("rhel7-fragmented")
    assert failures == ()
    assert render_report(families, dict(failures)) == report_of("rhel7-fragmented")[1]


def test_a_higher_extfrag_threshold_blames_low_memory() -> None:
    # Normal's extfrag index for orders 4..10: 0.922, 0.961, 0.981, 0.991, 0.996, 0.998, 0.999.
    text = render_report(families_of("rhel7-fragmented", kmem_vm_sysctl=[({"sysctl": "extfrag_threshold"}, 990)]),
                         {})
    normal = fragmentation_table(text)[("0", "Normal")]
    assert [normal[str(order)] for order in range(4, 11)] == ["low"] * 3 + ["frag"] * 4
    assert "  frag = fails, free memory is fragmented (extfrag index > 0.990): compaction helps" in text
    assert "  The limit is vm.extfrag_threshold (990) / 1000" in text


def test_without_the_sysctl_the_kernel_default_threshold_applies() -> None:
    default = render_report(families_of("rhel7-fragmented", kmem_vm_sysctl=[]), {})
    assert fragmentation_table(default) == fragmentation_table(render_report(collection("rhel7-fragmented")[0], {}))
    assert "vm.extfrag_threshold (500)" in default


def test_zones_without_memory_are_left_out() -> None:
    managed = [({"node": "0", "zone": zone}, 0.0 if zone == "DMA" else 1e9) for zone in ("DMA", "DMA32", "Normal")]
    text = render_report(families_of("rhel7-fragmented", kmem_zone_managed_bytes=managed), {})
    assert set(fragmentation_table(text)) == {("0", "DMA32"), ("0", "Normal")}


def test_free_memory_from_buddyinfo_without_zoneinfo() -> None:
    text = render_report(families_of("rhel7-fragmented", kmem_zone_free_bytes=[]), {})
    # Normal: 40153 + 2*12774 + 4*302 + 8*17 = 67045 pages of 4 KiB
    assert fragmentation_table(text)[("0", "Normal")]["free"] == human_bytes(67045 * 4096) == "261.9 MiB"


def test_a_fixed_kernel_gets_no_kmem_warning() -> None:
    for release, warned in (("3.10.0-1074.el7.x86_64", True), ("3.10.0-1075.el7.x86_64", False),
                            ("3.10.0-1160.el7.x86_64", False), ("4.4.0-21-generic", False)):
        text = render_report(families_of("rhel7-healthy", kmem_kernel_info=[({"release": release}, 1.0)]), {})
        assert ("WARNING KmemKmemAccountingOnBuggyKernel: kmem accounting is on for 33 cgroups" in text) is warned, \
            release


def test_conntrack_table_nearly_full() -> None:
    text = render_report(families_of("rhel7-healthy", kmem_nf_conntrack_entries=[({}, 60000.0)]), {})
    assert section(text, "Slab")[-1] == "  conntrack table: 60000 of 65536 entries (91.6 %)"
    assert verdict_lines(text)[3:] == [
        "  WARNING KmemConntrackTableNearlyFull: the conntrack table holds 60000 of 65536 entries (91.6%), over 90%: "
        "when full, new connections are dropped",
        "    runbook: docs/runbooks.md#kmemconntracktablenearlyfull"]


def test_memcg_warning_between_80_and_95_percent() -> None:
    text = render_report(families_of("live-6.18", kmem_memcg_ids_in_use=[({}, 55000.0)],
                                     kmem_memcg_visible_cgroups=[({}, 55000.0)]), {})
    assert section(text, "Memory cgroups") == [
        "  IDs in use: 55000 of 65535 (83.9 %): 20 cgroups held, 55000 visible, 10 dying, 9 kmem-enabled"]
    assert verdict_lines(text)[:2] == [
        "Verdict: warning (exit status 1)",
        "  WARNING KmemMemcgIdsHigh: 55000 of 65535 memory cgroup IDs in use (83.9%), over 80%"]


def test_failures_are_listed_with_their_reasons() -> None:
    families, failures = collection("broken-vmstat-truncated")
    assert dict(failures).keys() == {"conntrack", "memcg", "netns", "slabinfo", "vmstat", "zoneinfo"}
    text = render_report(families, {"vmstat": "a reason"})
    lines = text.splitlines()
    assert lines[1:8] == ["Failed collectors (their parts of the report are missing):", "  conntrack", "  memcg",
                          "  netns", "  slabinfo", "  vmstat: a reason", "  zoneinfo"]
    titles = [line.split(":")[0] for line in lines if line and not line.startswith(" ")]
    assert titles == ["kmem-exporter report", "Failed collectors (their parts of the report are missing)", "Kernel",
                      "Fragmentation", "Verdict"]
    assert "  WARNING KmemExporterCollectorFailing: collector vmstat failed: a reason" in lines
    assert "  no   =" not in text  # the extfrag collector succeeded


def test_no_metrics_no_sections() -> None:
    assert render_report([], {}) == ("kmem-exporter report\n\nVerdict: unknown (exit status 3)\n"
                                     "  Nothing to judge: no zone, memory cgroup or slab cache could be read.\n")


def test_human_bytes() -> None:
    assert [human_bytes(v) for v in (0, 1023, 1024, 1536, 1048576 * 1.25, 2 ** 40 * 3)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "1.2 MiB", "3.0 TiB"]


# The report's rules are those of the alert rules


SELECTOR = 'job="kmem-exporter"'  # the mixin's default kmemSelector, in every selector of the rendered rules


def alert_expr(file: str, name: str) -> str:
    """The alert's expression on one line, without the job selector (the report reads one host's metrics)."""
    groups = yaml.safe_load((PROJECT / "alerts" / file).read_text())["groups"]
    expr = " ".join(next(r["expr"] for g in groups for r in g["rules"] if r.get("alert") == name).split())
    assert SELECTOR in expr
    return expr.replace("{" + SELECTOR + "}", "").replace(SELECTOR + ", ", "").replace(", " + SELECTOR, "")


def test_leak_rule_is_the_alerts() -> None:
    assert alert_expr("slab.yaml", "KmemConntrackSlabCacheLeak") == (
        "kmem_nf_conntrack_slab_caches - kmem_network_namespaces > 5 and "
        "kmem_nf_conntrack_slab_caches > 2 * kmem_network_namespaces")
    cases = ((8, 2), (7, 2), (12, 6), (13, 6), (3, 3), (1, 1))
    assert [thresholds().conntrack_caches_leaked(c, n) for c, n in cases] == [True, False, False, True, False, False]


def test_memcg_rules_are_the_alerts() -> None:
    assert alert_expr("memcg.yaml", "KmemMemcgIdsHigh") == "kmem_memcg_ids_in_use / kmem_memcg_id_limit > 0.8"
    assert alert_expr("memcg.yaml", "KmemMemcgIdsCritical") == "kmem_memcg_ids_in_use / kmem_memcg_id_limit > 0.95"
    # The report has one moment, so it takes the alert's first condition (the share), not the filling rate.
    assert alert_expr("slab.yaml", "KmemConntrackTableNearlyFull").startswith(
        "kmem_nf_conntrack_entries / kmem_nf_conntrack_entries_limit > 0.9 or (")
    buggy = alert_expr("memcg.yaml", "KmemKmemAccountingOnBuggyKernel")
    assert f"kmem_kernel_info{{release=~`{BUGGY_KMEM_RELEASE.pattern}`}}" in buggy
    assert 'kmem_memcg_kmem_accounting_info{mode="per-cgroup"} == 1' in buggy
    assert "kmem_memcg_kmem_enabled_cgroups > 0" in buggy


# KmemHighOrderBlocksRunningOut's state, per fixture tree: the zones where over 90% of the free memory is in blocks
# below order 6 while more than twice the high watermark is free.
RUNNING_OUT = {
    "rhel7-fragmented": {("0", "DMA32"), ("0", "Normal")},  # 3.10: index 1.0, 6.5 and 3.3 times the watermark
    "numa2-debian9": {("0", "Normal"), ("1", "Normal")},  # 4.9, 2 nodes: 1.0 with 5.3 and 5.5 times (DMA32 0.27)
    "arm-highmem": {("0", "Normal")},  # 0.98, 29 order-6 blocks left of 417 MiB free; HighMem is not watched
    "rhel7-healthy": set(),  # 0.38 and 0.57
    "numa4": set(),  # nodes 2 and 3: 0.99, but only 1.9 times the watermark free: memory is short there
    "live-6.18": set(),  # 0.01
}


@pytest.mark.parametrize("host", sorted(RUNNING_OUT))
def test_running_out_follows_the_thresholds(host: str) -> None:
    state = read_state(collection(host)[0], {})
    limits = thresholds()

    def zones(limits: Any) -> set[tuple[str, str]]:
        return {(f.labels["node"], f.labels["zone"]) for f in judge(state, limits).findings
                if f.alert == "KmemHighOrderBlocksRunningOut"}

    assert zones(limits) == RUNNING_OUT[host]
    assert zones(dataclasses.replace(limits, fragmentation_unusable_ratio=1.0)) == set()
    # Nodes 2 and 3 of numa4 (1.9 times the watermark free) count as memory free once the factor is below 1.9.
    lowered = RUNNING_OUT[host] | ({("2", "Normal"), ("3", "Normal")} if host == "numa4" else set())
    assert zones(dataclasses.replace(limits, fragmentation_free_watermark_factor=1.5)) == lowered
