"""A node's state as the verdict sees it, read from one collection's metric families by metric name (as exposed:
counters with `_total`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from prometheus_client.core import Metric

Labels = Mapping[str, str]
ZONE_ORDER = ("DMA", "DMA32", "Normal", "HighMem", "Movable", "Device")


class Samples:
    """Sample lookup by metric name."""

    def __init__(self, families: Iterable[Metric]) -> None:
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

    def by_zone_order(self, name: str) -> dict[tuple[str, str, int], float]:
        return {(labels["node"], labels["zone"], int(labels["order"])): value for labels, value in self.samples(name)
                if labels.get("order", "").isdigit()}


@dataclass(frozen=True)
class Zone:
    node: str
    zone: str
    free_bytes: Optional[float]
    largest_free_order: Optional[int]  # -1: no free block at all; None: not known
    free_blocks: Mapping[int, float]  # order -> free blocks
    extfrag_index: Mapping[int, float]  # order -> index (-1: a block of that order is free)
    unusable_index: Mapping[int, float] = field(default_factory=dict)  # order -> share of free memory in smaller blocks
    high_watermark_bytes: Optional[float] = None


@dataclass(frozen=True)
class Memcg:
    in_use: float  # memory cgroup IDs in use
    cgroups: Optional[float]  # memory cgroups the kernel holds, dying ones included
    limit: Optional[float]
    visible: Optional[float]
    dying: Optional[float]
    kmem_enabled: Optional[float]


@dataclass(frozen=True)
class NodeState:
    collectors: Mapping[str, bool]  # collector -> succeeded
    failures: Mapping[str, str]  # failed collector -> reason, where known
    release: Optional[str]
    kmem_accounting: Optional[str]
    boot_nokmem: Optional[bool]
    extfrag_threshold_sysctl: Optional[float]  # vm.extfrag_threshold, when exported
    extfrag_source: Optional[str]
    max_order: Optional[int]
    zones: tuple[Zone, ...]  # zones with memory, nodes by number, zones in the kernel's order
    memcg: Optional[Memcg]
    slab_caches: tuple[tuple[str, float], ...]  # (cache, bytes), largest first
    conntrack_caches: Optional[float]
    network_namespaces: Optional[float]
    conntrack_entries: Optional[float]
    conntrack_limit: Optional[float]

    @property
    def judged(self) -> bool:
        """Whether there is anything to judge: zones, memory cgroups or slab caches (not so when every collector
        that reads them failed)."""
        return bool(self.zones or self.memcg or self.slab_caches or self.conntrack_caches is not None
                    or self.conntrack_entries is not None)

    @property
    def failed(self) -> list[str]:
        return sorted(name for name, ok in self.collectors.items() if not ok)


def read_state(families: Iterable[Metric], failures: Mapping[str, str]) -> NodeState:
    """The node's state from a collection's families; `failures` gives the reasons of failed collectors (may be
    empty: a running exporter's /metrics has only kmem_collector_success)."""
    metrics = Samples(families)
    nokmem = metrics.value("kmem_kernel_boot_nokmem")
    caches = sorted(((labels["cache"], v) for labels, v in metrics.samples("kmem_slab_bytes") if "cache" in labels),
                    key=lambda cache: (-cache[1], cache[0]))
    zones, max_order = _zones(metrics)
    return NodeState(
        collectors={labels["collector"]: value == 1 for labels, value in metrics.samples("kmem_collector_success")
                    if "collector" in labels},
        failures=dict(failures),
        release=metrics.info("kmem_kernel_info", "release"),
        kmem_accounting=metrics.info("kmem_memcg_kmem_accounting_info", "mode"),
        boot_nokmem=None if nokmem is None else nokmem == 1,
        extfrag_threshold_sysctl=metrics.value("kmem_vm_sysctl", sysctl="extfrag_threshold"),
        extfrag_source=metrics.info("kmem_extfrag_source_info", "source"),
        max_order=max_order,
        zones=zones,
        memcg=_memcg(metrics),
        slab_caches=tuple(caches),
        conntrack_caches=metrics.value("kmem_nf_conntrack_slab_caches"),
        network_namespaces=metrics.value("kmem_network_namespaces"),
        conntrack_entries=metrics.value("kmem_nf_conntrack_entries"),
        conntrack_limit=metrics.value("kmem_nf_conntrack_entries_limit"),
    )


def _of_zone(values: Mapping[tuple[str, str, int], float], node: str, zone: str) -> dict[int, float]:
    """One zone's values of a per-node, zone and order map, by order."""
    return {o: v for (n, z, o), v in sorted(values.items()) if (n, z) == (node, zone)}


def _zones(metrics: Samples) -> tuple[tuple[Zone, ...], Optional[int]]:
    largest = {(labels["node"], labels["zone"]): v for labels, v in metrics.samples("kmem_buddy_largest_free_order")}
    index = metrics.by_zone_order("kmem_extfrag_index")
    unusable = metrics.by_zone_order("kmem_unusable_index")
    blocks = metrics.by_zone_order("kmem_buddy_free_blocks")
    names = sorted(set(largest) | {key[:2] for key in index} | {key[:2] for key in blocks}, key=zone_order)
    names = [z for z in names if metrics.value("kmem_zone_managed_bytes", node=z[0], zone=z[1]) != 0]
    page_size = metrics.value("kmem_page_size_bytes")
    zones = []
    for node, zone in names:
        free_blocks = _of_zone(blocks, node, zone)
        free = metrics.value("kmem_zone_free_bytes", node=node, zone=zone)
        if free is None and page_size is not None and free_blocks:
            free = sum(n * page_size * 2 ** o for o, n in free_blocks.items())
        top = largest.get((node, zone))
        zones.append(Zone(node, zone, free, None if top is None else int(top), free_blocks,
                          _of_zone(index, node, zone), _of_zone(unusable, node, zone),
                          metrics.value("kmem_zone_watermark_bytes", node=node, zone=zone, watermark="high")))
    orders = [o for z in zones for o in (*z.free_blocks, *z.extfrag_index)]
    return tuple(zones), max(orders) if orders else None


def zone_order(zone: tuple[str, str]) -> tuple[int, int, str]:
    """Nodes by number, zones in the kernel's order (low memory first)."""
    node, name = zone
    rank = ZONE_ORDER.index(name) if name in ZONE_ORDER else len(ZONE_ORDER)
    return (int(node) if node.isdigit() else -1, rank, name)


def _memcg(metrics: Samples) -> Optional[Memcg]:
    cgroups = metrics.value("kmem_memcg_cgroups")
    used = metrics.value("kmem_memcg_ids_in_use")
    if used is None:  # an exporter from before kmem_memcg_ids_in_use: every cgroup held counts (too many on 4.7+)
        used = cgroups
    if used is None:
        return None
    return Memcg(used, cgroups, metrics.value("kmem_memcg_id_limit") or None,
                 metrics.value("kmem_memcg_visible_cgroups"), metrics.value("kmem_memcg_dying_cgroups"),
                 metrics.value("kmem_memcg_kmem_enabled_cgroups"))
