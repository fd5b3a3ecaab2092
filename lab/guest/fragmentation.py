"""Scenario: fragmentation until the kernel itself fails a high-order allocation, then the runbook's remedy.

Unmovable pins come from the lab module (lab/kmod): it takes free blocks of the probe's order without reclaim,
keeps one page of each and gives the rest back, step by step, until no block of that order is left. Each step
ends with one GFP_KERNEL allocation of that order (the probe; the kernel logs its failure itself). Then
compact_memory is applied, and after it the pins are released, each measured.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from lab.guest.harness import CHECKER, Lab, kernel_lines, run, write

MODULE_DIR = Path("/sys/kernel/debug/kmem_lab")
LABELS = re.compile(r'(\w+)="([^"]*)"')


def per_order(text: str) -> dict[tuple[str, str, str], float]:
    """Lines of the form `Node N, zone Z v0 v1 ...` (/proc/buddyinfo, the debugfs index files):
    (node, zone, order) -> value."""
    values = {}
    for line in text.splitlines():
        head, _, rest = line.partition("zone")
        node = head.split()[1].rstrip(",")
        zone, *numbers = rest.split()
        for order, number in enumerate(numbers):
            values[(node, zone, str(order))] = float(number)
    return values


def indices(name: str) -> dict[tuple[str, str, str], float]:
    """The kernel's own debugfs index file: (node, zone, order) -> value."""
    return per_order(Path(f"/sys/kernel/debug/extfrag/{name}").read_text())


def exported(samples: dict[str, float], metric: str) -> dict[tuple[str, str, str], float]:
    values = {}
    for series, number in samples.items():
        if series.startswith(metric + "{"):
            labels = dict(LABELS.findall(series))
            values[(labels["node"], labels["zone"], labels["order"])] = number
    return values


def exported_free_blocks_equal(samples: dict[str, float], text: str) -> bool:
    """Whether the scrape's kmem_buddy_free_blocks are the counts of this /proc/buddyinfo text."""
    kernel = per_order(text)
    return bool(kernel) and exported(samples, "kmem_buddy_free_blocks") == kernel


def buddyinfo() -> dict[str, list[int]]:
    zones = {}
    for line in Path("/proc/buddyinfo").read_text().splitlines():
        head, _, rest = line.partition("zone")
        zone, *counts = rest.split()
        zones[zone] = [int(c) for c in counts]
    return zones


def largest_free_order(counts: list[int]) -> int:
    return max((order for order, n in enumerate(counts) if n), default=-1)


def zone_free_share(zone: str) -> float:
    for part in Path("/proc/zoneinfo").read_text().split("Node ")[1:]:
        if part.split("\n", 1)[0].split()[-1] == zone:
            free = int(re.search(r"pages free\s+(\d+)", part).group(1))  # type: ignore[union-attr]
            managed = int(re.search(r"\bmanaged\s+(\d+)", part).group(1))  # type: ignore[union-attr]
            return free / managed
    raise ValueError(f"zone {zone} not in /proc/zoneinfo")


class Fragmentation:
    def __init__(self, lab: Lab, module: Path, order: int, batch: int, pause: float, hold: float) -> None:
        self.lab, self.module, self.order, self.batch, self.pause, self.hold = lab, module, order, batch, pause, hold
        self.compared = self.moved = self.mismatched = 0
        self.mismatch_examples: list[str] = []
        lab.checker_collectors = ["extfrag", "buddyinfo"]
        watched = "|".join(str(o) for o in range(6, 11))
        probe = "|".join(str(o) for o in range(order, 11))
        lab.plot = [
            {"title": "largest free order (DMA32)", "query": 'kmem_buddy_largest_free_order{zone="DMA32"}'},
            {"title": "extfrag index, order 6 (DMA32)", "query": 'kmem_extfrag_index{zone="DMA32",order="6"}'},
            {"title": f"extfrag index, order {order} (DMA32)",
             "query": f'kmem_extfrag_index{{zone="DMA32",order="{order}"}}'},
            {"title": "unusable index, order 6 (DMA32)", "query": 'kmem_unusable_index{zone="DMA32",order="6"}'},
            {"title": "free share of the zone (DMA32)",
             "query": 'kmem_zone_free_bytes{zone="DMA32"} / kmem_zone_managed_bytes{zone="DMA32"}'},
            {"title": "Unmovable pageblocks (DMA32)",
             "query": 'kmem_pagetype_pageblocks{zone="DMA32",migratetype="Unmovable"}'},
            {"title": "free blocks of order >= 6", "query": f'sum(kmem_buddy_free_blocks{{order=~"{watched}"}})'},
            {"title": f"free blocks of order >= {order}",
             "query": f'sum(kmem_buddy_free_blocks{{order=~"{probe}"}})'},
        ]

    def compare_indices(self) -> None:
        """The exporter's indices (computed from buddyinfo) against debugfs read just before and after the scrape.
        A scrape is compared only when the zones held still through it: /proc/buddyinfo read before and after it, and
        the free blocks the same scrape exports, all equal, and debugfs the same before and after. (The indices are
        printed with three decimals, so debugfs alone can read the same on either side of a change that moved the
        exporter's value by 0.001 in between.)"""
        buddy_before = Path("/proc/buddyinfo").read_text()
        before = {name: indices(name) for name in ("extfrag_index", "unusable_index")}
        samples = self.lab.scrape(CHECKER)
        after = {name: indices(name) for name in ("extfrag_index", "unusable_index")}
        buddy_after = Path("/proc/buddyinfo").read_text()
        if before != after or buddy_before != buddy_after or not exported_free_blocks_equal(samples, buddy_before):
            self.moved += 1
            return
        for name, metric in (("extfrag_index", "kmem_extfrag_index"), ("unusable_index", "kmem_unusable_index")):
            ours = exported(samples, metric)
            for key, value in before[name].items():
                self.compared += 1
                if key not in ours or abs(ours[key] - value) > 0.0005:
                    self.mismatched += 1
                    if len(self.mismatch_examples) < 5:
                        self.mismatch_examples.append(f"{name}{key}: kernel {value}, exporter {ours.get(key)}")

    def probe(self) -> bool:
        try:
            write(MODULE_DIR / "probe", f"{self.order}\n")
            return True
        except OSError:
            return False

    def state(self) -> dict[str, object]:
        zones = buddyinfo()
        extfrag = indices("extfrag_index")
        return {
            "largest_free_order": {zone: largest_free_order(c) for zone, c in zones.items()},
            "extfrag_index": {f"{zone}/{o}": extfrag[("0", zone, str(o))] for zone in zones for o in (self.order, 6)},
            "free_share_DMA32": round(zone_free_share("DMA32"), 3),
            "probe_succeeds": self.probe(),
        }

    def observe(self, seconds: float, pinning: bool = False) -> None:
        """Compare every second for seconds; with pinning, the unmovable consumer goes on taking free blocks."""
        end = time.time() + seconds
        while time.time() < end:
            if pinning:
                write(MODULE_DIR / "pin", f"{self.order} {self.batch}\n")
            self.compare_indices()
            time.sleep(1)

    def alert_firing(self, name: str) -> bool:
        return bool(self.lab.query(f'count(ALERTS{{alertname="{name}",alertstate="firing",lab_rules="scaled"}})'))

    def run(self) -> None:
        lab = self.lab
        run("insmod", str(self.module))
        self.observe(15)
        lab.mark("pinning")
        failed = False
        for step in range(400):
            write(MODULE_DIR / "pin", f"{self.order} {self.batch}\n")
            self.compare_indices()
            if not self.probe():
                failed = True
                break
            time.sleep(self.pause)
        if failed:
            lab.mark("failure")
        logged = kernel_lines(f"page allocation failure: order:{self.order}")
        lab.check("order-N allocation fails, logged by the kernel", failed and bool(logged),
                  f"{len(logged)} kernel line(s) after {step + 1} steps")
        share = zone_free_share("DMA32")
        lab.measures["at_failure"] = {"pinned_pages": int((MODULE_DIR / "pin").read_text()), "free_share_DMA32":
                                      round(share, 3), "buddyinfo": buddyinfo()}
        lab.check("free memory is a large share of the zone at the failure", share > 0.5,
                  f"DMA32 free {share:.0%} of managed")
        self.observe(self.hold, pinning=True)
        lab.measures["before_compaction"] = self.state()
        lab.mark("compact_memory")
        write("/proc/sys/vm/compact_memory", "1\n")
        lab.measures["after_compaction"] = self.state()
        self.observe(self.hold)
        lab.measures["after_compaction"]["alert_firing_after_hold"] = self.alert_firing("KmemHighOrderFragmentation")
        lab.mark("release")
        write(MODULE_DIR / "release", "1\n")
        write("/proc/sys/vm/compact_memory", "1\n")
        lab.measures["after_release"] = self.state()
        self.observe(self.hold)
        lab.measures["after_release"]["alert_firing_after_hold"] = self.alert_firing("KmemHighOrderFragmentation")
        lab.check("the exporter's indices equal debugfs at every scrape", self.mismatched == 0 and self.compared > 0,
                  f"{self.compared} values compared, {self.moved} scrapes skipped (the files changed during them), "
                  f"{self.mismatched} differ "
                  + "; ".join(self.mismatch_examples))
        events = lab.scrape().get(
            f'kmem_kernel_log_events_total{{event="page_allocation_failure",order="{self.order}"}}', 0.0)
        total = len(kernel_lines(f"page allocation failure: order:{self.order}"))
        lab.check("one event counted per logged failure", events == total, f"exporter {events:.0f}, kernel log {total}")
        subprocess.run(["rmmod", "kmem_lab"], check=False)
