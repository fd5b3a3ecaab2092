"""The verdict as plain text, for a person on the node: the node's state in sections, then the findings."""

from __future__ import annotations

import textwrap

from kmem_exporter.report.findings import Verdict, extfrag_limit, outcome
from kmem_exporter.report.state import NodeState
from kmem_exporter.report.thresholds import Thresholds

FIRST_REPORTED_ORDER = 4  # orders 0..3 rarely fail; the kernel itself treats order > 3 as "costly"
TOP_SLAB_CACHES = 5
WIDTH = 116


def human_bytes(value: float) -> str:
    """1536 -> '1.5 KiB'; binary units, one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f} %"


def render_text(state: NodeState, verdict: Verdict, limits: Thresholds) -> str:
    lines = ["kmem-exporter report"]
    if state.failed:
        lines.append("Failed collectors (their parts of the report are missing):")
        lines += [f"  {name}: {state.failures[name]}" if state.failures.get(name) else f"  {name}"
                  for name in state.failed]
    for body in (_kernel(state), _fragmentation(state, limits), _slab(state), _memcg(state), _verdict(verdict)):
        if body:
            lines += [""] + body
    return "\n".join(lines) + "\n"


def _kernel(state: NodeState) -> list[str]:
    lines = []
    if state.release is not None:
        lines.append(f"  release: {state.release}")
    if state.kmem_accounting is not None:
        lines.append(f"  memcg kmem accounting: {state.kmem_accounting}")
    if state.boot_nokmem is not None:
        lines.append(f"  booted with cgroup.memory=nokmem: {'yes' if state.boot_nokmem else 'no'}")
    return ["Kernel"] + lines if lines else []


def _fragmentation(state: NodeState, limits: Thresholds) -> list[str]:
    if not state.zones or state.max_order is None:
        return []
    orders = list(range(FIRST_REPORTED_ORDER, state.max_order + 1))
    limit = extfrag_limit(state, limits)
    rows = [["node", "zone", "free", "largest"] + [str(o) for o in orders]]
    for zone in state.zones:
        top = zone.largest_free_order
        rows.append([zone.node, zone.zone, "?" if zone.free_bytes is None else human_bytes(zone.free_bytes),
                     "-" if top is None or top < 0 else str(top)]
                    + [outcome(top, zone.extfrag_index.get(o), o, limit) for o in orders])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    where = {"debugfs": "the kernel's (debugfs extfrag/extfrag_index)",
             "computed": "computed from /proc/buddyinfo"}.get(state.extfrag_source or "", "not available")
    threshold = limit * 1000
    return [
        "Fragmentation: free memory, largest free order"
        + (f", can an allocation of order {orders[0]}..{orders[-1]} succeed now?" if orders else ""),
        *table,
        "  yes  = a free block of that order exists",
        f"  frag = fails, free memory is fragmented (extfrag index > {limit:.3f}): compaction helps",
        f"  low  = fails, free memory is low (extfrag index <= {limit:.3f}): reclaim helps",
        *(["  no   = fails (no extfrag index to say why)"] if any("no" in row for row in rows) else []),
        f"  The limit is vm.extfrag_threshold ({threshold:.0f}) / 1000"
        + ("" if state.extfrag_threshold_sysctl is not None else ", the kernel's default")
        + f"; extfrag index: {where}.",
        f"  The verdict watches order {limits.fragmentation_order}, as the alert KmemHighOrderFragmentation does.",
    ]


def _slab(state: NodeState) -> list[str]:
    lines = []
    caches = state.slab_caches
    if caches:
        lines.append(f"  largest caches (of {len(caches)}):")
        width = max(len(name) for name, _ in caches[:TOP_SLAB_CACHES])
        lines += [f"    {name.ljust(width)}  {human_bytes(v)}" for name, v in caches[:TOP_SLAB_CACHES]]
    conntrack, namespaces = state.conntrack_caches, state.network_namespaces
    if conntrack is not None:
        lines.append(f"  nf_conntrack slab caches: {conntrack:.0f}"
                     + ("" if namespaces is None else f", live network namespaces: {namespaces:.0f}"))
    entries, limit = state.conntrack_entries, state.conntrack_limit
    if entries is not None and limit:
        lines.append(f"  conntrack table: {entries:.0f} of {limit:.0f} entries ({percent(entries, limit)})")
    return ["Slab"] + lines if lines else []


def _memcg(state: NodeState) -> list[str]:
    memcg = state.memcg
    if memcg is None:
        return []
    counts = (("cgroups held", memcg.cgroups), ("visible", memcg.visible), ("dying", memcg.dying),
              ("kmem-enabled", memcg.kmem_enabled))
    details = ", ".join(f"{v:.0f} {name}" for name, v in counts if v is not None)
    share = f" of {memcg.limit:.0f} ({percent(memcg.in_use, memcg.limit)})" if memcg.limit else ""
    return ["Memory cgroups", f"  IDs in use: {memcg.in_use:.0f}{share}" + (f": {details}" if details else "")]


def _verdict(verdict: Verdict) -> list[str]:
    lines = [f"Verdict: {verdict.status} (exit status {verdict.exit_status})"]
    if not verdict.judged:
        lines.append("  Nothing to judge: no zone, memory cgroup or slab cache could be read.")
    for finding in verdict.findings:
        head = f"  {finding.severity.upper()} {finding.alert}: "
        lines += textwrap.wrap(finding.summary, WIDTH, initial_indent=head, subsequent_indent="    ")
        lines.append(f"    runbook: {finding.runbook}")
    return lines
