"""The verdict as data (`report --format json`), in the shape docs/report.schema.json describes."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from kmem_exporter.report.findings import Verdict, extfrag_limit
from kmem_exporter.report.state import NodeState
from kmem_exporter.report.thresholds import Thresholds

SCHEMA_VERSION = 1
TOP_CACHES = 20


def report_data(state: NodeState, verdict: Verdict, limits: Thresholds, source: str) -> dict[str, Any]:
    """The report as JSON-ready data; `source` is "files" or the URL of the exporter that was read."""
    memcg = state.memcg
    return {
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "status": verdict.status,
        "exit_status": verdict.exit_status,
        "findings": [{"alert": f.alert, "severity": f.severity, "summary": f.summary, "labels": dict(f.labels),
                      "values": dict(f.values), "runbook": f.runbook} for f in verdict.findings],
        "collectors": {name: {"success": ok, "error": state.failures.get(name) if not ok else None}
                       for name, ok in sorted(state.collectors.items())},
        "thresholds": dataclasses.asdict(limits),
        "kernel": {"release": state.release, "kmem_accounting": state.kmem_accounting,
                   "boot_nokmem": state.boot_nokmem},
        "fragmentation": {
            "watched_order": limits.fragmentation_order,
            "extfrag_limit": extfrag_limit(state, limits),
            "extfrag_threshold_sysctl": state.extfrag_threshold_sysctl,
            "extfrag_source": state.extfrag_source,
            "zones": [{"node": z.node, "zone": z.zone, "free_bytes": z.free_bytes,
                       "largest_free_order": z.largest_free_order,
                       "free_blocks": _by_order(z.free_blocks), "extfrag_index": _by_order(z.extfrag_index),
                       "unusable_index": _by_order(z.unusable_index), "high_watermark_bytes": z.high_watermark_bytes}
                      for z in state.zones],
        },
        "memcg": None if memcg is None else dataclasses.asdict(memcg),
        "slab": {"cache_count": len(state.slab_caches),
                 "largest_caches": [{"cache": name, "bytes": size} for name, size in state.slab_caches[:TOP_CACHES]],
                 "nf_conntrack_slab_caches": state.conntrack_caches,
                 "network_namespaces": state.network_namespaces,
                 "conntrack_entries": state.conntrack_entries, "conntrack_entries_limit": state.conntrack_limit},
    }


def _by_order(values: Mapping[int, float]) -> dict[str, float]:
    """Orders as JSON object keys ("0", "1", ...), in order."""
    return {str(order): value for order, value in sorted(values.items())}
