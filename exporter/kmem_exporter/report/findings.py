"""The verdict on a node's state: its findings, each with the severity of the alert rule it mirrors, the numbers
behind it and the runbook of the remedy; and the status (and exit status) they add up to."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

from kmem_exporter.report.state import Memcg, NodeState
from kmem_exporter.report.thresholds import Thresholds

Number = Union[int, float, str, None]
STATUSES = ("healthy", "warning", "critical", "unknown")  # the index is the exit status
RUNBOOKS = "docs/runbooks.md"
# KmemKmemAccountingOnBuggyKernel: 3.10 kernels before 3.10.0-1075.el7 (RHEL/CentOS 7.8) leak memory cgroups
# that have kmem accounting on.
BUGGY_KMEM_RELEASE = re.compile(r"3\.10\.0-([0-9]{1,3}|10[0-6][0-9]|107[0-4])([.-].*)?")


@dataclass(frozen=True)
class Finding:
    alert: str  # the alert rule that fires on the same condition
    severity: str  # "warning" or "critical", as the alert rule's label
    summary: str
    labels: Mapping[str, str] = field(default_factory=dict)  # what it is about (node and zone, collector)
    values: Mapping[str, Number] = field(default_factory=dict)  # the numbers behind it

    @property
    def runbook(self) -> str:
        """The runbook of the remedy: the alert's section of docs/runbooks.md."""
        return f"{RUNBOOKS}#{self.alert.lower()}"


@dataclass(frozen=True)
class Verdict:
    findings: tuple[Finding, ...]
    judged: bool  # False: nothing could be judged (every collector that reads memory failed)

    @property
    def status(self) -> str:
        if not self.judged:
            return "unknown"
        return "critical" if self.count("critical") else "warning" if self.count("warning") else "healthy"

    @property
    def exit_status(self) -> int:
        return STATUSES.index(self.status)

    def count(self, severity: str) -> int:
        return sum(1 for finding in self.findings if finding.severity == severity)


def judge(state: NodeState, limits: Thresholds) -> Verdict:
    findings = [Finding("KmemExporterCollectorFailing", "warning",
                        f"collector {name} failed" + (f": {state.failures[name]}" if state.failures.get(name) else ""),
                        {"collector": name}) for name in state.failed]
    findings += _fragmentation(state, limits) + _memcg(state, limits) + _slab(state, limits)
    return Verdict(tuple(findings), state.judged)


def extfrag_limit(state: NodeState, limits: Thresholds) -> float:
    """The extfrag index above which a failing allocation is blamed on fragmentation: vm.extfrag_threshold / 1000."""
    sysctl = state.extfrag_threshold_sysctl
    return limits.extfrag_threshold_default if sysctl is None else sysctl / 1000


def _fragmentation(state: NodeState, limits: Thresholds) -> list[Finding]:
    order, limit = limits.fragmentation_order, extfrag_limit(state, limits)
    findings = []
    for zone in state.zones:
        index = zone.extfrag_index.get(order)
        largest = zone.largest_free_order
        if limits.ignores_zone(zone.zone) or index is None or largest is None or largest >= order or index <= limit:
            continue
        findings.append(Finding(
            "KmemHighOrderFragmentation", "warning",
            f"no free block of order {order} or more in zone {zone.zone} of node {zone.node} (largest: "
            f"{'none' if largest < 0 else largest}); extfrag index {index:.3f} > {limit:.3f}: free memory is "
            "fragmented, compaction helps",
            {"node": zone.node, "zone": zone.zone},
            {"order": order, "largest_free_order": largest, "extfrag_index": index, "extfrag_limit": limit,
             "free_bytes": zone.free_bytes}))
    return findings


def _memcg(state: NodeState, limits: Thresholds) -> list[Finding]:
    memcg = state.memcg
    findings = []
    if memcg is not None and memcg.limit:
        ratio = memcg.in_use / memcg.limit
        values: dict[str, Number] = {"in_use": memcg.in_use, "cgroups": memcg.cgroups, "limit": memcg.limit,
                                     "ratio": ratio, "dying": memcg.dying}
        used = f"{memcg.in_use:.0f} of {memcg.limit:.0f} memory cgroup IDs in use ({ratio:.1%})"
        if ratio > limits.memcg_ids_critical_ratio:
            findings.append(Finding(
                "KmemMemcgIdsCritical", "critical",
                f"{used}, over {limits.memcg_ids_critical_ratio:.0%}{_held_by_dying(memcg)}: when none is left, no "
                "container can start", values={**values, "threshold": limits.memcg_ids_critical_ratio}))
        elif ratio > limits.memcg_ids_high_ratio:
            findings.append(Finding("KmemMemcgIdsHigh", "warning",
                                    f"{used}, over {limits.memcg_ids_high_ratio:.0%}{_held_by_dying(memcg)}",
                                    values={**values, "threshold": limits.memcg_ids_high_ratio}))
    enabled = memcg.kmem_enabled if memcg is not None else None
    if (enabled and state.kmem_accounting == "per-cgroup" and state.release is not None
            and BUGGY_KMEM_RELEASE.fullmatch(state.release)):
        findings.append(Finding(
            "KmemKmemAccountingOnBuggyKernel", "warning",
            f"kmem accounting is on for {enabled:.0f} cgroups on kernel {state.release}; 3.10 kernels before "
            "3.10.0-1075.el7 never free such cgroups after removal",
            values={"kmem_enabled_cgroups": enabled, "release": state.release}))
    return findings


def _held_by_dying(memcg: Memcg) -> str:
    """The IDs in use beyond the visible cgroups are counted for dying ones (kernels before 4.7)."""
    held = None if memcg.visible is None else memcg.in_use - memcg.visible
    if not held or held < 1:
        return ""
    return f" ({held:.0f} of them for dying cgroups, which keep their IDs on kernels before 4.7)"


def _slab(state: NodeState, limits: Thresholds) -> list[Finding]:
    findings = []
    caches, namespaces = state.conntrack_caches, state.network_namespaces
    if caches is not None and namespaces is not None and limits.conntrack_caches_leaked(caches, namespaces):
        findings.append(Finding(
            "KmemConntrackSlabCacheLeak", "warning",
            f"{caches:.0f} nf_conntrack slab caches for {namespaces:.0f} live network namespaces: per-namespace "
            "caches leaked (the 3.10 leak); creating a namespace needs a high-order allocation for its cache, "
            "which fails once memory is fragmented",
            values={"nf_conntrack_slab_caches": caches, "network_namespaces": namespaces,
                    "excess": limits.conntrack_leak_excess, "factor": limits.conntrack_leak_factor}))
    entries, limit = state.conntrack_entries, state.conntrack_limit
    if entries is not None and limit and entries / limit > limits.conntrack_table_ratio:
        findings.append(Finding(
            "KmemConntrackTableNearlyFull", "warning",
            f"the conntrack table holds {entries:.0f} of {limit:.0f} entries ({entries / limit:.1%}), over "
            f"{limits.conntrack_table_ratio:.0%}: when full, new connections are dropped",
            values={"entries": entries, "limit": limit, "ratio": entries / limit,
                    "threshold": limits.conntrack_table_ratio}))
    return findings


def outcome(largest: Optional[int], index: Optional[float], order: int, limit: float) -> str:
    """Can an allocation of `order` succeed now: 'yes', 'frag' (fails, fragmented), 'low' (fails, memory low), or
    'no' when it fails and no extfrag index says why."""
    if (largest is not None and largest >= order) or index == -1:
        return "yes"
    if index is None:
        return "no"
    return "frag" if index > limit else "low"
