"""Generate the Grafana dashboards (Grafana's dashboard JSON model, schemaVersion 39) from code.

    python dashboards/generate.py          # rewrite dashboards/*.json
    python dashboards/generate.py --check  # exit 1 when a checked-in file differs from what this generates

Every panel queries the data source chosen in the `datasource` variable and the host chosen in `instance`; panels
that show zones also filter on `node` and `zone`. tests/test_dashboards.py checks that the JSON files are current.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).parent
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
INSTANCE = 'instance="$instance"'
ZONE = 'instance="$instance", node=~"$node", zone=~"$zone"'
TAG = "kmem-exporter"

Json = dict[str, Any]


# --- building blocks -------------------------------------------------------------------------------------------


def target(expr: str, legend: str = "", instant: bool = False) -> Json:
    """A Prometheus query; refIds are assigned when the panel is built."""
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }


def thresholds(*steps: tuple[str, float | None]) -> Json:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


GOOD_LOW = thresholds(("green", None), ("orange", 0.8), ("red", 0.95))
NEUTRAL = thresholds(("green", None))


def value_mapping(texts: dict[int, tuple[str, str]]) -> list[Json]:
    return [{"type": "value", "options": {str(value): {"text": text, "color": color, "index": i}
                                          for i, (value, (text, color)) in enumerate(texts.items())}}]


def reduce_last() -> Json:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def timeseries(title: str, description: str, targets: list[Json], unit: str, *, log: int = 0, bars: bool = False,
               min_: float | None = None, max_: float | None = None, stack: bool = False,
               threshold_steps: Json | None = None, legend_calcs: tuple[str, ...] = ("lastNotNull",)) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 80 if bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "axisPlacement": "auto",
        "scaleDistribution": {"type": "log", "log": log} if log else {"type": "linear"},
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "line" if threshold_steps else "off"},
    }
    defaults: Json = {"unit": unit, "color": {"mode": "palette-classic"}, "custom": custom,
                      "thresholds": threshold_steps or NEUTRAL}
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    options = {
        "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": list(legend_calcs)},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return _panel("timeseries", title, description, targets, defaults, options)


def stat(title: str, description: str, targets: list[Json], unit: str, *, steps: Json = NEUTRAL,
         mappings: list[Json] | None = None, text_mode: str = "auto", color_mode: str = "value",
         graph: bool = False, decimals: int | None = None) -> Json:
    defaults: Json = {"unit": unit, "color": {"mode": "thresholds"}, "thresholds": steps, "mappings": mappings or []}
    if decimals is not None:
        defaults["decimals"] = decimals
    options = {"reduceOptions": reduce_last(), "orientation": "auto", "textMode": text_mode,
               "colorMode": color_mode, "graphMode": "area" if graph else "none", "justifyMode": "auto"}
    return _panel("stat", title, description, targets, defaults, options)


def gauge(title: str, description: str, targets: list[Json], unit: str, *, steps: Json, min_: float,
          max_: float) -> Json:
    defaults = {"unit": unit, "min": min_, "max": max_, "color": {"mode": "thresholds"}, "thresholds": steps}
    options = {"reduceOptions": reduce_last(), "orientation": "auto", "showThresholdLabels": False,
               "showThresholdMarkers": True}
    return _panel("gauge", title, description, targets, defaults, options)


def bargauge(title: str, description: str, targets: list[Json], unit: str, *, steps: Json = NEUTRAL) -> Json:
    defaults = {"unit": unit, "min": 0, "color": {"mode": "thresholds"}, "thresholds": steps}
    options = {"reduceOptions": reduce_last(), "orientation": "horizontal", "displayMode": "gradient",
               "showUnfilled": True, "valueMode": "color", "namePlacement": "auto", "sizing": "auto"}
    return _panel("bargauge", title, description, targets, defaults, options)


def heatmap(title: str, description: str, targets: list[Json], unit: str, *, y_label: str) -> Json:
    """Each series is one row (bucket), named by its legend; numeric names are sorted numerically by Grafana."""
    for query in targets:
        query["format"] = "time_series"
    defaults = {"unit": unit, "custom": {"scaleDistribution": {"type": "linear"},
                                         "hideFrom": {"legend": False, "tooltip": False, "viz": False}}}
    options = {
        "calculate": False,
        "cellGap": 1,
        "color": {"mode": "scheme", "scheme": "Spectral", "scale": "exponential", "exponent": 0.2, "steps": 64,
                  "reverse": True, "fill": "dark-orange"},
        "filterValues": {"le": 1e-9},  # zero cells stay empty
        "legend": {"show": True},
        "rowsFrame": {"layout": "unknown", "value": "free blocks"},
        "showValue": "never",
        "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": True},
        "yAxis": {"axisPlacement": "left", "axisLabel": y_label, "reverse": False},
    }
    return _panel("heatmap", title, description, targets, defaults, options)


def _panel(kind: str, title: str, description: str, targets: list[Json], defaults: Json, options: Json) -> Json:
    for ref, query in zip("ABCDEFGH", targets):
        query["refId"] = ref
    return {"type": kind, "title": title, "description": description, "datasource": DATASOURCE,
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options, "targets": targets}


@dataclass
class Layout:
    """Places panels left to right on Grafana's 24-column grid, starting a new line when one is full."""

    panels: list[Json] = field(default_factory=list)
    x: int = 0
    y: int = 0
    line_height: int = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.y += 1

    def add(self, panel: Json, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.line_height = max(self.line_height, h)

    def _newline(self) -> None:
        self.y += self.line_height
        self.x = 0
        self.line_height = 0


def datasource_variable() -> Json:
    return {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
            "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
            "regex": "", "skipUrlSync": False}


def query_variable(name: str, label: str, query: str, *, multi: bool = False) -> Json:
    variable: Json = {
        "type": "query", "name": name, "label": label, "datasource": DATASOURCE,
        "definition": query, "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "current": {}, "hide": 0, "includeAll": multi, "multi": multi, "options": [], "refresh": 2,
        "regex": "", "skipUrlSync": False, "sort": 3 if multi else 1,
    }
    if multi:
        variable["allValue"] = ".*"
    return variable


def custom_variable(name: str, label: str, values: list[str], default: str) -> Json:
    return {
        "type": "custom", "name": name, "label": label, "query": ",".join(values),
        "current": {"selected": True, "text": default, "value": default},
        "options": [{"selected": v == default, "text": v, "value": v} for v in values],
        "hide": 0, "includeAll": False, "multi": False, "skipUrlSync": False,
    }


def instance_variable() -> Json:
    return query_variable("instance", "Host", "label_values(kmem_exporter_build_info, instance)")


def zone_variables() -> list[Json]:
    return [
        query_variable("node", "NUMA node", 'label_values(kmem_buddy_free_blocks{instance="$instance"}, node)',
                       multi=True),
        query_variable("zone", "Zone", 'label_values(kmem_buddy_free_blocks{instance="$instance"}, zone)',
                       multi=True),
    ]


def dashboard(uid: str, title: str, description: str, variables: list[Json], layout: Layout) -> Json:
    for number, panel in enumerate(layout.panels, start=1):
        panel["id"] = number
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "links": [{"type": "dashboards", "tags": [TAG], "asDropdown": False, "includeVars": True, "keepTime": True,
                   "title": "kmem-exporter dashboards", "icon": "external link", "targetBlank": False,
                   "tooltip": "", "url": ""}],
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": layout.panels,
    }


# --- the dashboards --------------------------------------------------------------------------------------------


def fragmentation() -> Json:
    page = Layout()
    page.row("Can this host allocate order-$order blocks now?")
    page.add(stat(
        "Order-$order allocation possible",
        "Per zone: is there a free block of order $order or higher (2^$order contiguous pages)? \"no\" means an "
        "allocation of that order has to wait for compaction or reclaim and may fail, like the order:6 "
        "allocations that stop container starts on RHEL 7. Choose the order in the `order` variable. The DMA "
        "zone (16 MiB for old devices) usually says yes but serves only GFP_DMA allocations: what counts is "
        "DMA32 and Normal.",
        [target(f"kmem_buddy_largest_free_order{{{ZONE}}} >= bool $order", "node {{node}} {{zone}}")],
        "none", steps=thresholds(("red", None), ("green", 1)),
        mappings=value_mapping({0: ("no", "red"), 1: ("yes", "green")}), color_mode="background"), 8, 5)
    page.add(stat(
        "Largest free order",
        "Per zone: the highest order with at least one free block (-1: no free block at all). Orange and red "
        "mark zones that cannot serve order-4 and order-2 allocations; on a healthy host the Normal zone shows "
        "9 or 10.",
        [target(f"kmem_buddy_largest_free_order{{{ZONE}}}", "node {{node}} {{zone}}")],
        "none", steps=thresholds(("red", None), ("orange", 2), ("green", 4))), 8, 5)
    page.add(stat(
        "Free memory",
        "Per zone: free memory in all orders together. Fragmentation is when this is large while the largest "
        "free order is small; when this is small too, the host is short of memory, not fragmented.",
        [target(f"kmem_zone_free_bytes{{{ZONE}}}", "node {{node}} {{zone}}")], "bytes"), 8, 5)

    page.row("Free blocks")
    page.add(timeseries(
        "Free blocks by order (log scale)",
        "Free blocks of each order, summed over the selected nodes and zones, on a log scale. A healthy host has "
        "free blocks up to order 9-10; on a fragmented host the high orders drop to 0 (they vanish from the log "
        "scale) while orders 0-2 hold thousands.",
        [target(f"sum by (order) (kmem_buddy_free_blocks{{{ZONE}}})", "order {{order}}")], "short", log=2), 12, 9)
    page.add(timeseries(
        "Largest free order over time",
        "The largest free order per zone over time. A falling line that stays below the order your workload "
        "needs (see the stat above) is fragmentation building up; a jump back up follows compaction or a drop "
        "of caches.",
        [target(f"kmem_buddy_largest_free_order{{{ZONE}}}", "node {{node}} {{zone}}")], "none", min_=-1, max_=11,
        threshold_steps=thresholds(("transparent", None), ("red", 4))), 12, 9)
    page.add(heatmap(
        "Free blocks by order over time (heatmap)",
        "One row per order (0 at the bottom), one column per interval; the colour is the number of free blocks "
        "on an exponential scale, and an empty cell means none. A healthy host is coloured up to the top rows; "
        "on a fragmented host the upper rows are empty while the bottom ones glow.",
        [target(f"sum by (order) (kmem_buddy_free_blocks{{{ZONE}}})", "{{order}}")], "short", y_label="order"),
        24, 8)

    page.row("Fragmentation indices")
    page.add(timeseries(
        "Extfrag index by order",
        "The kernel's fragmentation index per zone and order: -1 means an allocation of that order succeeds now; "
        "from 0 to 1, why it would fail: towards 0 lack of memory, towards 1 fragmentation. Above the dashed "
        "`extfrag_threshold` line (the sysctl / 1000, default 0.5) the kernel compacts instead of reclaiming. Bad: "
        "values near 1 at the orders you need.",
        [target(f"kmem_extfrag_index{{{ZONE}, order=~\"[4-9]|10\"}}", "node {{node}} {{zone}} order {{order}}"),
         target(f'kmem_vm_sysctl{{{INSTANCE}, sysctl="extfrag_threshold"}} / 1000', "extfrag_threshold")],
        "none", min_=-1, max_=1), 12, 9)
    page.add(timeseries(
        "Unusable free index by order",
        "The share of free memory that cannot serve an allocation of the order, per zone (orders 4 and up). 0: "
        "every free page is in a block large enough; 1: none is. Bad: values near 1 at the orders you need while "
        "free memory is plentiful.",
        [target(f"kmem_unusable_index{{{ZONE}, order=~\"[4-9]|10\"}}", "node {{node}} {{zone}} order {{order}}")],
        "percentunit", min_=0, max_=1), 12, 9)

    page.row("Reclaim and compaction")
    page.add(timeseries(
        "Free memory against watermarks",
        "Free memory per zone against its min, low and high watermarks. Below low, kswapd reclaims in the "
        "background; at min, allocating processes reclaim themselves (allocation stalls). Bad: free memory "
        "hugging the low or min line. Raise min_free_kbytes or watermark_scale_factor to lift the lines.",
        [target(f"kmem_zone_free_bytes{{{ZONE}}}", "node {{node}} {{zone}} free"),
         target(f"kmem_zone_watermark_bytes{{{ZONE}}}", "node {{node}} {{zone}} {{watermark}}")],
        "bytes", min_=0), 12, 9)
    page.add(timeseries(
        "Direct compaction",
        "Direct compactions per second: stalls (a process had to compact before it got its pages), and how they "
        "ended. Bad: failures as frequent as stalls, sustained.",
        [target(f"rate(kmem_vmstat_compact_stall_total{{{INSTANCE}}}[$__rate_interval])", "stalls"),
         target(f"rate(kmem_vmstat_compact_fail_total{{{INSTANCE}}}[$__rate_interval])", "failed"),
         target(f"rate(kmem_vmstat_compact_success_total{{{INSTANCE}}}[$__rate_interval])", "succeeded")],
        "ops", min_=0), 12, 9)
    page.add(timeseries(
        "Allocation stalls (direct reclaim)",
        "Allocations per second that entered direct reclaim: one counter on kernels before 4.8, one per zone type "
        "later. A few are normal under memory pressure; a sustained rate means kswapd cannot keep free memory "
        "above the watermarks and processes wait.",
        [target(f"rate(kmem_vmstat_allocstall{suffix}_total{{{INSTANCE}}}[$__rate_interval])", legend)
         for suffix, legend in (("", "all zones (before 4.8)"), ("_dma", "DMA"), ("_dma32", "DMA32"),
                                ("_normal", "Normal"), ("_movable", "Movable"))],
        "ops", min_=0), 12, 9)
    page.add(timeseries(
        "Allocation failures in the kernel log",
        "Allocation failures and stalls the kernel logged, per event and order: each bar is the number in the "
        "rate interval before it, so one event shows in a few neighbouring bars. Any bar is bad: something in "
        "the kernel did not get its memory; order 4-6 points at fragmentation, order 0 at memory pressure.",
        [target(f'sum by (event, order) (increase(kmem_kernel_log_events_total{{{INSTANCE}, '
                f'event=~"page_allocation_failure|page_allocation_stall|slub_allocation_failure"}}'
                f'[$__rate_interval]))', "{{event}} order {{order}}")], "short", bars=True, min_=0), 12, 9)
    return dashboard(
        "kmem-fragmentation", "kmem-exporter / Memory fragmentation",
        "Can this host serve high-order allocations? Free blocks per order, fragmentation indices, watermarks, "
        "compaction and allocation failures.",
        [instance_variable(), *zone_variables(),
         custom_variable("order", "Order needed", [str(o) for o in range(1, 11)], "6")],
        page)


def slab_conntrack() -> Json:
    page = Layout()
    page.row("nf_conntrack caches and network namespaces")
    page.add(stat(
        "nf_conntrack slab caches",
        "Slab caches that belong to conntrack. On RHEL/CentOS 7 (3.10) each network namespace has its own "
        "nf_conntrack_<id> cache; modern kernels have one shared cache. Bad: far more than live network "
        "namespaces (next panel).",
        [target(f"kmem_nf_conntrack_slab_caches{{{INSTANCE}}}", "caches")], "none"), 6, 5)
    page.add(stat(
        "Live network namespaces",
        "Distinct network namespaces held by processes or bind mounts, from the exporter's background walk of "
        "/proc. Each running container (pod) has one, the host one more.",
        [target(f"kmem_network_namespaces{{{INSTANCE}}}", "namespaces")], "none"), 6, 5)
    page.add(stat(
        "Caches beyond live namespaces",
        "nf_conntrack caches minus live network namespaces (0 when fewer): on a 3.10 kernel, caches of removed "
        "namespaces that were never freed. Orange above 0, red above 5 (the leak alert also needs twice the "
        "namespaces). Meaningless on modern kernels, where it stays 0.",
        [target(f"clamp_min(kmem_nf_conntrack_slab_caches{{{INSTANCE}}} - kmem_network_namespaces{{{INSTANCE}}}, 0)",
                "leaked")], "none", steps=thresholds(("green", None), ("orange", 1), ("red", 6)),
        color_mode="background"), 6, 5)
    page.add(gauge(
        "Conntrack table fill",
        "Conntrack entries in use as a share of nf_conntrack_max. Orange above 75%, red above 90%: when full, "
        "the kernel drops packets of new connections.",
        [target(f"kmem_nf_conntrack_entries{{{INSTANCE}}} / kmem_nf_conntrack_entries_limit{{{INSTANCE}}}",
                "table fill")], "percentunit", steps=thresholds(("green", None), ("orange", 0.75), ("red", 0.9)),
        min_=0, max_=1), 6, 5)
    page.add(timeseries(
        "nf_conntrack caches against network namespaces",
        "Both counts over time. On a 3.10 kernel the lines should move together; a cache line that climbs away "
        "from the namespace line is the leak.",
        [target(f"kmem_nf_conntrack_slab_caches{{{INSTANCE}}}", "nf_conntrack caches"),
         target(f"kmem_network_namespaces{{{INSTANCE}}}", "network namespaces")], "none", min_=0), 12, 8)
    page.add(timeseries(
        "Conntrack entries",
        "Conntrack entries in use and the table's limit (nf_conntrack_max). Bad: entries close to the limit.",
        [target(f"kmem_nf_conntrack_entries{{{INSTANCE}}}", "entries"),
         target(f"kmem_nf_conntrack_entries_limit{{{INSTANCE}}}", "limit")], "none", min_=0), 12, 8)

    page.row("Slab caches")
    page.add(bargauge(
        "Top slab caches by bytes",
        "The 15 slab caches (or cache families: per-namespace and per-cgroup copies are folded into one) holding "
        "the most memory now. Slab memory cannot be moved by compaction, so large and growing caches fragment "
        "memory; dentry and inode caches can be freed by dropping caches, others cannot.",
        [target(f"topk(15, kmem_slab_bytes{{{INSTANCE}}})", "{{cache}}", instant=True)], "bytes"), 12, 12)
    page.add(bargauge(
        "Caches per family",
        "How many slab caches each series stands for: per-network-namespace nf_conntrack caches and per-memory-"
        "cgroup copies (dentry(1234:docker-abc)) are folded into their family. Bad: families with thousands of "
        "caches, which grow with containers started, not with containers running.",
        [target(f"topk(15, kmem_slab_caches{{{INSTANCE}}})", "{{cache}}", instant=True)], "none"), 12, 12)
    page.add(timeseries(
        "Top slab caches over time",
        "Memory held over time by the 10 slab caches that are largest at the end of the time range. Bad: a "
        "cache that grows steadily and never shrinks (a leak), or one that grows with container churn.",
        [target(f"kmem_slab_bytes{{{INSTANCE}}} and on (cache) topk(10, kmem_slab_bytes{{{INSTANCE}}} @ end())",
                "{{cache}}")], "bytes", min_=0), 12, 9)
    page.add(timeseries(
        "nf_conntrack slab objects",
        "Objects in all nf_conntrack caches: active (tracked connections) and allocated. Many allocated but few "
        "active objects spread over many caches is memory held by leaked caches.",
        [target(f"kmem_nf_conntrack_slab_objects_active{{{INSTANCE}}}", "active"),
         target(f"kmem_nf_conntrack_slab_objects{{{INSTANCE}}}", "allocated")], "none", min_=0), 12, 9)
    return dashboard(
        "kmem-slab-conntrack", "kmem-exporter / Slab and conntrack",
        "Which slab caches hold kernel memory, and are nf_conntrack caches leaking (RHEL 7 / 3.10)?",
        [instance_variable()], page)


def memcg() -> Json:
    page = Layout()
    page.row("Memory cgroup IDs")
    page.add(gauge(
        "Memory cgroup IDs in use",
        "Memory cgroups in use (including dying ones) as a share of the kernel's limit of 65535 IDs. Orange above "
        "80%, red above 95%: at 100% no container or pod can start on this host.",
        [target(f"kmem_memcg_cgroups{{{INSTANCE}}} / kmem_memcg_id_limit{{{INSTANCE}}}", "in use")],
        "percentunit", steps=GOOD_LOW, min_=0, max_=1), 6, 6)
    page.add(stat(
        "Time until IDs run out",
        "At the rate of the last 6 hours (the slope predict_linear uses), how long until memory cgroups in use "
        "reach the limit: IDs left divided by new cgroups per second. Shown as 1 year when the count is flat or "
        "falling, 0 when no ID is left. Red below 1 day, orange below 1 week.",
        [target(f"clamp_max(clamp_min(kmem_memcg_id_limit{{{INSTANCE}}} - kmem_memcg_cgroups{{{INSTANCE}}}, 0) / "
                f"clamp_min(deriv(kmem_memcg_cgroups{{{INSTANCE}}}[6h]), 1e-9), 31536000)", "time left")],
        "s", steps=thresholds(("red", None), ("orange", 86400), ("green", 604800)), color_mode="background"), 6, 6)
    page.add(stat(
        "kmem accounting",
        "How kernel memory accounting of memory cgroups works on this host: per-cgroup (3.10 and kernels before "
        "4.6; switched on per cgroup by runc), always (4.6 and later, cgroup v2), or disabled "
        "(cgroup.memory=nokmem). per-cgroup on a 3.10 kernel before 3.10.0-1075.el7 is the combination that leaks "
        "memory cgroups.",
        [target(f"kmem_memcg_kmem_accounting_info{{{INSTANCE}}} == 1", "{{mode}}")], "none", text_mode="name"),
        4, 6)
    page.add(stat(
        "Kernel",
        "The running kernel's release. 3.10.0 builds before 1075 (RHEL/CentOS 7.8) leak memory cgroups that have "
        "kmem accounting on.",
        [target(f"kmem_kernel_info{{{INSTANCE}}}", "{{release}}")], "none", text_mode="name"), 4, 6)
    page.add(stat(
        "Booted with cgroup.memory=nokmem",
        "Whether the kernel command line turns kernel memory accounting off for all memory cgroups (\"yes\" is "
        "the safe setting on 3.10 hosts).",
        [target(f"kmem_kernel_boot_nokmem{{{INSTANCE}}}", "nokmem")], "none",
        mappings=value_mapping({0: ("no", "text"), 1: ("yes", "green")})), 4, 6)
    page.add(stat(
        "kmem-enabled cgroups",
        "Memory cgroups whose kernel memory is accounted. On a 3.10 kernel each of them is freed late or never "
        "after removal.",
        [target(f"kmem_memcg_kmem_enabled_cgroups{{{INSTANCE}}}", "kmem-enabled")], "none"), 8, 4)
    page.add(stat(
        "Dying cgroups",
        "Memory cgroups removed but not yet freed: they still hold an ID. Orange above 1000, red above 10000.",
        [target(f"kmem_memcg_dying_cgroups{{{INSTANCE}}}", "dying")], "none",
        steps=thresholds(("green", None), ("orange", 1000), ("red", 10000))), 8, 4)
    page.add(stat(
        "Cgroup walk age",
        "Seconds since the exporter's last completed walk of the cgroup tree (it runs in the background). The "
        "numbers above are that old; bad when much older than the walk interval.",
        [target(f'time() - kmem_background_pass_timestamp_seconds{{{INSTANCE}, collector="memcg"}}', "age")], "s",
        steps=thresholds(("green", None), ("orange", 300), ("red", 900))), 8, 4)

    page.row("Over time")
    page.add(timeseries(
        "Memory cgroups in use against the limit",
        "Memory cgroups in use, the 65535 limit, and where predict_linear puts the count 24 hours ahead from the "
        "last 6 hours. Bad: the prediction line at or above the limit (the exhaustion alert fires then).",
        [target(f"kmem_memcg_cgroups{{{INSTANCE}}}", "in use"),
         target(f"kmem_memcg_id_limit{{{INSTANCE}}}", "limit"),
         target(f"clamp_min(predict_linear(kmem_memcg_cgroups{{{INSTANCE}}}[6h], 86400), 0)", "predicted in 24 h")],
        "none", min_=0), 12, 9)
    page.add(timeseries(
        "Visible, dying and kmem-enabled cgroups",
        "Visible: memory cgroup directories that exist. Dying: removed but not freed. kmem-enabled: with kernel "
        "memory accounting. Bad: a dying line that only goes up (the 3.10 leak) while visible stays flat.",
        [target(f"kmem_memcg_visible_cgroups{{{INSTANCE}}}", "visible"),
         target(f"kmem_memcg_dying_cgroups{{{INSTANCE}}}", "dying"),
         target(f"kmem_memcg_kmem_enabled_cgroups{{{INSTANCE}}}", "kmem-enabled")], "none", min_=0), 12, 9)
    page.add(timeseries(
        "Dying cgroups: change per hour",
        "How fast dying memory cgroups accumulate (per hour, from the last hour). Around 0 is normal; a "
        "sustained positive rate means removed cgroups are not being freed.",
        [target(f"deriv(kmem_memcg_dying_cgroups{{{INSTANCE}}}[1h]) * 3600", "dying per hour")], "none"), 24, 8)
    return dashboard(
        "kmem-memcg", "kmem-exporter / Memory cgroups",
        "How close is this host to the 65535 memory cgroup limit, how fast is it getting there, and is kernel "
        "memory accounting leaking cgroups?",
        [instance_variable()], page)


DASHBOARDS: dict[str, Callable[[], Json]] = {
    "fragmentation.json": fragmentation,
    "slab-conntrack.json": slab_conntrack,
    "memcg.json": memcg,
}


def render(build: Callable[[], Json]) -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the JSON files are current")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python dashboards/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
