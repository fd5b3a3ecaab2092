"""The landing page `/`: the links, the node's verdict, and per node and zone charts of free blocks and of the
extfrag index by order, and the memory cgroup IDs in use against the limit. Server-rendered HTML with inline SVG: no
script and no external asset (its Content-Security-Policy allows none)."""

from __future__ import annotations

import asyncio
import html
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from kmem_exporter import __version__
from kmem_exporter.report.findings import Verdict, extfrag_limit, judge
from kmem_exporter.report.state import NodeState, read_state
from kmem_exporter.report.text import human_bytes
from kmem_exporter.report.thresholds import Thresholds
from kmem_exporter.scrape.collection import Collection
from kmem_exporter.scrape.scraper import Scraper
from kmem_exporter.web import svg

DOCS = "https://kmem-exporter.invalid/docs/"  # the project's placeholder address, as in the alerts' runbook_url
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
COLORS = {"healthy": "#2e8b57", "warning": "#d68910", "critical": "#c0392b", "unknown": "#666"}
STYLE = """
body{font-family:sans-serif;margin:0 auto;max-width:980px;padding:12px 20px;color:#222;background:#fff}
h1{margin:0 0 4px}h2{margin:22px 0 8px;border-bottom:1px solid #ccc}h3{margin:14px 0 4px;font-size:16px}
nav a{margin-right:14px;font-weight:bold}.meta{color:#555;font-size:14px}
.verdict{border-left:10px solid;padding:8px 14px;background:#f7f7f7;margin-top:14px}
.verdict h2{border:0;margin:0 0 6px;font-size:26px}.verdict li{margin:5px 0}
.sev{font-weight:bold;text-transform:uppercase}.warning{color:#b9770e}.critical{color:#c0392b}
.zone{display:flex;flex-wrap:wrap;gap:8px}.zone figure{margin:0}.zone figcaption{font-size:13px;font-weight:bold}
ul.collectors{columns:4;font-size:14px}
"""


@dataclass(frozen=True)
class PageLinks:
    metrics_path: str
    collectors: Sequence[str]  # the enabled collectors


def render_page(links: PageLinks, state: NodeState, verdict: Verdict, limits: Thresholds,
                collected_at: Optional[float], now: Optional[float] = None) -> str:
    """The page for one collection (`collected_at`, seconds since the epoch, when it was made)."""
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>kmem-exporter: {verdict.status}</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>kmem-exporter</h1>",
        f'<nav><a href="{html.escape(links.metrics_path)}">Metrics</a><a href="/-/healthy">Health</a>'
        f'<a href="/-/ready">Ready</a><a href="{DOCS}">Docs</a></nav>',
        f'<p class="meta">Version {html.escape(__version__)}{_kernel(state)}{_age(collected_at, now)}</p>',
        _verdict(verdict),
        _memcg(state, limits),
        _fragmentation(state, limits),
        "<h2>Enabled collectors</h2><ul class=\"collectors\">",
        "".join(f"<li>{html.escape(name)}</li>" for name in links.collectors),
        "</ul></body></html>",
    ]
    return "".join(parts)


def _kernel(state: NodeState) -> str:
    return f" · kernel {html.escape(state.release)}" if state.release else ""


def _age(collected_at: Optional[float], now: Optional[float]) -> str:
    if collected_at is None:
        return ""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(collected_at))
    age = max(0.0, (time.time() if now is None else now) - collected_at)
    return f" · collected {stamp} ({age:.0f} s ago)"


def _verdict(verdict: Verdict) -> str:
    color = COLORS[verdict.status]
    items = [f'<li><span class="sev {f.severity}">{f.severity}</span> <b>{html.escape(f.alert)}</b>: '
             f'{html.escape(f.summary)} (<a href="{DOCS}{html.escape(f.runbook.partition("/")[2])}">runbook</a>)</li>'
             for f in verdict.findings]
    if not verdict.judged:
        items.insert(0, "<li>Nothing to judge: no zone, memory cgroup or slab cache could be read.</li>")
    body = f"<ul>{''.join(items)}</ul>" if items else "<p>No finding: every check passed.</p>"
    return (f'<section class="verdict" id="verdict" style="border-color:{color}">'
            f'<h2 style="color:{color}">Verdict: {verdict.status}</h2>{body}</section>')


def _memcg(state: NodeState, limits: Thresholds) -> str:
    memcg = state.memcg
    if memcg is None or not memcg.limit:
        return ""
    counts = (("cgroups held", memcg.cgroups), ("visible", memcg.visible), ("dying", memcg.dying))
    details = ", ".join(f"{value:.0f} {name}" for name, value in counts if value is not None)
    chart = svg.usage_bar(memcg.in_use, memcg.limit, limits.memcg_ids_high_ratio, limits.memcg_ids_critical_ratio,
                          "Memory cgroup IDs in use against the limit")
    return (f"<h2>Memory cgroup IDs</h2><p class=\"meta\">In use: the online memory cgroups, and the dying ones on "
            f"kernels before 4.7 (4.7 and later release a removed cgroup's ID). {details or 'No details'}.</p>{chart}")


def _fragmentation(state: NodeState, limits: Thresholds) -> str:
    if not state.zones:
        return ""
    limit, order = extfrag_limit(state, limits), limits.fragmentation_order
    parts = [f"<h2>Fragmentation</h2><p class=\"meta\">Free blocks by order (log scale) and the extfrag index by "
             f"order for each zone. The watched order is {order}; above the limit ({limit:.3f}, "
             "vm.extfrag_threshold / 1000) a failing allocation is due to fragmentation, below it to low memory; "
             "a green tick: a free block of that order exists.</p>"]
    for zone in state.zones:
        name = f"Node {zone.node}, zone {zone.zone}"
        free = "?" if zone.free_bytes is None else human_bytes(zone.free_bytes)
        largest = zone.largest_free_order
        top = "none" if largest is not None and largest < 0 else "?" if largest is None else str(largest)
        charts = []
        if zone.free_blocks:
            charts.append(f"<figure><figcaption>Free blocks by order (log scale)</figcaption>"
                          f"{svg.free_blocks_chart(zone.free_blocks, order, f'{name}: free blocks by order')}"
                          "</figure>")
        if zone.extfrag_index:
            charts.append(f"<figure><figcaption>Extfrag index by order</figcaption>"
                          f"{svg.extfrag_chart(zone.extfrag_index, limit, order, f'{name}: extfrag index by order')}"
                          "</figure>")
        parts.append(f'<h3 id="zone-{html.escape(zone.node)}-{html.escape(zone.zone)}">{html.escape(name)}: '
                     f'{free} free, largest free order {top}</h3><div class="zone">{"".join(charts)}</div>')
    return "".join(parts)


class StatusPage:
    """Serves the page from the latest collection: a scrape's, when it is recent; otherwise it asks for one as a scrape
    does (joining any collection in progress), so visitors cause at most one collection per MAX_AGE."""

    MAX_AGE = 60.0

    def __init__(self, links: PageLinks, scraper: Scraper, limits: Thresholds) -> None:
        self._links, self._scraper, self._limits = links, scraper, limits
        self._judged: Optional[tuple[Collection, NodeState, Verdict]] = None

    async def render(self) -> str:
        collection = self._scraper.latest
        if collection is None or time.monotonic() - collection.collected_monotonic > self.MAX_AGE:
            collection = await self._scraper.scrape()
        if self._judged is None or self._judged[0] is not collection:
            state, verdict = await asyncio.get_running_loop().run_in_executor(None, self._judge, collection)
            self._judged = (collection, state, verdict)
        _, state, verdict = self._judged
        return render_page(self._links, state, verdict, self._limits, collection.collected_at)

    def _judge(self, collection: Collection) -> tuple[NodeState, Verdict]:
        state = read_state(collection.families, collection.failures)
        return state, judge(state, self._limits)
