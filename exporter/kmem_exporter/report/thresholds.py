"""The verdict's thresholds, read from the package's thresholds.yaml (which the monitoring mixin imports too)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional

import yaml


@dataclass(frozen=True)
class Thresholds:
    fragmentation_order: int
    extfrag_threshold_default: float
    ignored_zones: str  # a regular expression, matched against the whole zone name
    fragmentation_unusable_ratio: float
    fragmentation_free_watermark_factor: float
    memcg_ids_high_ratio: float
    memcg_ids_critical_ratio: float
    conntrack_leak_excess: float
    conntrack_leak_factor: float
    conntrack_table_ratio: float

    def ignores_zone(self, zone: str) -> bool:
        return re.fullmatch(self.ignored_zones, zone) is not None

    def conntrack_caches_leaked(self, caches: float, namespaces: float) -> bool:
        """The rule of the KmemConntrackSlabCacheLeak alert. On 3.10 every network namespace has its own
        nf_conntrack_<id> cache (plus a few shared ones); many caches beyond the live namespaces, and several times
        as many, means caches of removed namespaces were never freed. Both conditions keep the shared caches and a
        namespace being created or removed right now from counting as a leak."""
        return (caches - namespaces > self.conntrack_leak_excess
                and caches > self.conntrack_leak_factor * namespaces)


_KEYS = {"fragmentationOrder": int, "extfragThresholdDefault": float, "ignoredZones": str,
         "fragmentationUnusableRatio": float, "fragmentationFreeWatermarkFactor": float,
         "memcgIdsHighRatio": float, "memcgIdsCriticalRatio": float, "conntrackLeakExcess": float,
         "conntrackLeakFactor": float, "conntrackTableRatio": float}


def parse_thresholds(text: str) -> Thresholds:
    """Thresholds from the YAML text of thresholds.yaml; ValueError when a key is missing or of the wrong type."""
    data: Any = yaml.safe_load(text)
    if not isinstance(data, dict) or set(data) != set(_KEYS):
        raise ValueError(f"thresholds: expected the keys {sorted(_KEYS)}")
    values = []
    for key, kind in _KEYS.items():
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
            raise ValueError(f"thresholds: {key}: expected {kind.__name__}, got {value!r}")
        values.append(kind(value))
    return Thresholds(*values)


_loaded: Optional[Thresholds] = None


def thresholds() -> Thresholds:
    """The package's thresholds (read once)."""
    global _loaded
    if _loaded is None:
        _loaded = parse_thresholds(resources.files("kmem_exporter").joinpath("thresholds.yaml").read_text("utf-8"))
    return _loaded
