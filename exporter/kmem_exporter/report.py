"""The `report` command's diagnosis: one collection's metric families in, a plain-text summary out.

Pure: it reads no file and knows no collector, only the metric names of the metric reference (docs/metrics.md). Each
section appears only when its metrics are there; the rules are those of the alert rules in `alerts/`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Mapping, Optional, Sequence

from prometheus_client.core import Metric

Labels = Mapping[str, str]

FIRST_REPORTED_ORDER = 4  # orders 0..3 rarely fail; the kernel itself treats order > 3 as "costly"
DEFAULT_EXTFRAG_THRESHOLD = 500.0  # the kernel's default vm.extfrag_threshold
MEMCG_WARNING, MEMCG_CRITICAL = 0.80, 0.95  # KmemMemcgIdsHigh, KmemMemcgIdsCritical
CONNTRACK_TABLE_WARNING = 0.90  # KmemConntrackTableNearlyFull
TOP_SLAB_CACHES = 5
ZONE_ORDER = ("DMA", "DMA32", "Normal", "HighMem", "Movable", "Device")
# KmemKmemAccountingOnBuggyKernel: 3.10 kernels before 3.10.0-1075.el7 (RHEL/CentOS 7.8) leak memory cgroups
# that have kmem accounting on.
BUGGY_KMEM_RELEASE = re.compile(r"3\.10\.0-([0-9]{1,3}|10[0-6][0-9]|107[0-4])([.-].*)?")


def conntrack_caches_leaked(caches: float, namespaces: float) -> bool:
    """The rule of the KmemConntrackSlabCacheLeak alert. On 3.10 every network namespace has its own
    nf_conntrack_<id> cache (plus a few shared ones); more than 5 caches beyond the live namespaces, and more
    than twice as many, means caches of removed namespaces were never freed. Both conditions keep the shared
    caches and a namespace being created or removed right now from counting as a leak."""
    return caches - namespaces > 5 and caches > 2 * namespaces


class _Metrics:
    """Sample lookup by metric name (as exposed: counters with `_total`)."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._samples: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
        for family in families:
            for sample in family.samples:
                self._samples[sample.name].append((sample.labels, float(sample.value)))

    def samples(self, name: str) -> list[tuple[Labels, float]]:
        return self._samples.get(name, [])

    def value(self, name: str, **labels: str) -> Optional[float]:
        for sample_labels, value in self.samples(name):
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return value
        return None

    def info(self, name: str, label: str) -> Optional[str]:
        """The label value of the info-style gauge series that is 1."""
        return next((labels[label] for labels, value in self.samples(name) if value == 1 and label in labels), None)


def human_bytes(value: float) -> str:
    """1536 -> '1.5 KiB'; binary units, one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f} %"


def render_report(families: Sequence[Metric], failures: Mapping[str, str]) -> str:
    """The diagnosis of one collection; `failures` maps each failed collector to its reason (may be empty)."""
    metrics = _Metrics(families)
    failed = sorted(labels["collector"] for labels, value in metrics.samples("kmem_collector_success") if value != 1)
    lines = ["kmem-exporter report"]
    if failed:
        lines.append("Failed collectors (their parts of the report are missing):")
        lines += [f"  {name}: {failures[name]}" if failures.get(name) else f"  {name}" for name in failed]
    for section in (_kernel, _fragmentation, _slab, _memcg):
        body = section(metrics)
        if body:
            lines += [""] + body
    return "\n".join(lines) + "\n"


def _kernel(metrics: _Metrics) -> list[str]:
    release = metrics.info("kmem_kernel_info", "release")
    mode = metrics.info("kmem_memcg_kmem_accounting_info", "mode")
    nokmem = metrics.value("kmem_kernel_boot_nokmem")
    lines = []
    if release is not None:
        lines.append(f"  release: {release}")
    if mode is not None:
        lines.append(f"  memcg kmem accounting: {mode}")
    if nokmem is not None:
        lines.append(f"  booted with cgroup.memory=nokmem: {'yes' if nokmem == 1 else 'no'}")
    return ["Kernel"] + lines if lines else []


def _fragmentation(metrics: _Metrics) -> list[str]:
    largest = {(labels["node"], labels["zone"]): v for labels, v in metrics.samples("kmem_buddy_largest_free_order")}
    index = {(labels["node"], labels["zone"], int(labels["order"])): v
             for labels, v in metrics.samples("kmem_extfrag_index")}
    blocks = {(labels["node"], labels["zone"], int(labels["order"])): v
              for labels, v in metrics.samples("kmem_buddy_free_blocks")}
    zones = sorted(set(largest) | {key[:2] for key in index}, key=_zone_order)
    zones = [z for z in zones if metrics.value("kmem_zone_managed_bytes", node=z[0], zone=z[1]) != 0]
    if not zones:
        return []
    max_order = max(key[2] for key in list(index) + list(blocks) if key[:2] in zones)
    orders = list(range(FIRST_REPORTED_ORDER, max_order + 1))
    threshold = metrics.value("kmem_vm_sysctl", sysctl="extfrag_threshold")
    threshold = DEFAULT_EXTFRAG_THRESHOLD if threshold is None else threshold
    source = metrics.info("kmem_extfrag_source_info", "source")
    page_size = metrics.value("kmem_page_size_bytes")

    rows = [["node", "zone", "free", "largest"] + [str(o) for o in orders]]
    for node, zone in zones:
        free = metrics.value("kmem_zone_free_bytes", node=node, zone=zone)
        if free is None and page_size is not None:
            free = sum(n * page_size * 2 ** o for (bn, bz, o), n in blocks.items() if (bn, bz) == (node, zone))
        top = largest.get((node, zone))
        rows.append([node, zone, "?" if free is None else human_bytes(free),
                     "-" if top is None or top < 0 else f"{top:.0f}"]
                    + [_outcome(top, index.get((node, zone, o)), o, threshold / 1000) for o in orders])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    where = {"debugfs": "the kernel's (debugfs extfrag/extfrag_index)",
             "computed": "computed from /proc/buddyinfo"}.get(source or "", "not available")
    limit = f"{threshold / 1000:.3f}"
    return [
        "Fragmentation: free memory, largest free order"
        + (f", can an allocation of order {orders[0]}..{orders[-1]} succeed now?" if orders else ""),
        *table,
        "  yes  = a free block of that order exists",
        f"  frag = fails, free memory is fragmented (extfrag index > {limit}): compaction helps",
        f"  low  = fails, free memory is low (extfrag index <= {limit}): reclaim helps",
        *(["  no   = fails (no extfrag index to say why)"] if any("no" in row for row in rows) else []),
        f"  The limit is vm.extfrag_threshold ({threshold:.0f}) / 1000; extfrag index: {where}.",
    ]


def _zone_order(zone: tuple[str, str]) -> tuple[int, int, str]:
    """Nodes by number, zones in the kernel's order (low memory first)."""
    node, name = zone
    rank = ZONE_ORDER.index(name) if name in ZONE_ORDER else len(ZONE_ORDER)
    return (int(node) if node.isdigit() else -1, rank, name)


def _outcome(largest: Optional[float], index: Optional[float], order: int, threshold: float) -> str:
    """'yes', 'frag', 'low', or 'no' when it fails and the extfrag index is not there to say why."""
    if (largest is not None and largest >= order) or index == -1:
        return "yes"
    if index is None:
        return "no"
    return "frag" if index > threshold else "low"


def _slab(metrics: _Metrics) -> list[str]:
    lines = []
    caches = sorted(metrics.samples("kmem_slab_bytes"), key=lambda s: (-s[1], s[0].get("cache", "")))
    if caches:
        lines.append(f"  largest caches (of {len(caches)}):")
        width = max(len(labels["cache"]) for labels, _ in caches[:TOP_SLAB_CACHES])
        lines += [f"    {labels['cache'].ljust(width)}  {human_bytes(v)}" for labels, v in caches[:TOP_SLAB_CACHES]]
    conntrack = metrics.value("kmem_nf_conntrack_slab_caches")
    namespaces = metrics.value("kmem_network_namespaces")
    if conntrack is not None and namespaces is not None:
        lines.append(f"  nf_conntrack slab caches: {conntrack:.0f}, live network namespaces: {namespaces:.0f}")
        if conntrack_caches_leaked(conntrack, namespaces):
            lines.append("  WARNING: caches far above namespaces: leaked per-namespace caches (the 3.10 leak).")
            lines.append("  (More than 5 caches beyond the namespaces and over twice as many. Creating a namespace")
            lines.append("  needs a high-order allocation for its cache, which fails once memory is fragmented.)")
    elif conntrack is not None:
        lines.append(f"  nf_conntrack slab caches: {conntrack:.0f}")
    entries = metrics.value("kmem_nf_conntrack_entries")
    limit = metrics.value("kmem_nf_conntrack_entries_limit")
    if entries is not None and limit:
        lines.append(f"  conntrack table: {entries:.0f} of {limit:.0f} entries ({percent(entries, limit)})")
        if entries / limit > CONNTRACK_TABLE_WARNING:
            lines.append(f"  WARNING: the conntrack table is over {CONNTRACK_TABLE_WARNING:.0%} full; "
                         "when full, new connections are dropped.")
    return ["Slab"] + lines if lines else []


def _memcg(metrics: _Metrics) -> list[str]:
    used = metrics.value("kmem_memcg_cgroups")
    limit = metrics.value("kmem_memcg_id_limit")
    if used is None:
        return []
    lines = ["Memory cgroups"]
    counts = [(name, metrics.value(f"kmem_memcg_{name}_cgroups")) for name in ("visible", "dying", "kmem_enabled")]
    details = ", ".join(f"{v:.0f} {name.replace('_', '-')}" for name, v in counts if v is not None)
    share = f" of {limit:.0f} ({percent(used, limit)})" if limit else ""
    lines.append(f"  IDs in use: {used:.0f}{share}" + (f": {details}" if details else ""))
    if limit:
        if used / limit > MEMCG_CRITICAL:
            lines.append(f"  CRITICAL: over {MEMCG_CRITICAL:.0%} of the memory cgroup IDs are in use (dying ones "
                         "hold theirs);")
            lines.append("  when none is left, no container can start.")
        elif used / limit > MEMCG_WARNING:
            lines.append(f"  WARNING: over {MEMCG_WARNING:.0%} of the memory cgroup IDs are in use.")
    release = metrics.info("kmem_kernel_info", "release")
    kmem_enabled = metrics.value("kmem_memcg_kmem_enabled_cgroups")
    if (kmem_enabled and metrics.info("kmem_memcg_kmem_accounting_info", "mode") == "per-cgroup"
            and release is not None and BUGGY_KMEM_RELEASE.fullmatch(release)):
        lines.append(f"  WARNING: kmem accounting is on for {kmem_enabled:.0f} cgroups on kernel {release};")
        lines.append("  3.10 kernels before 3.10.0-1075.el7 never free such cgroups after removal.")
    return lines
