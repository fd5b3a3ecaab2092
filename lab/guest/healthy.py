"""Scenario: a fresh boot with ordinary activity for several minutes; no alert may fire."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lab.guest.harness import WORK, Lab


class Healthy:
    def __init__(self, lab: Lab, minutes: float) -> None:
        self.lab, self.minutes = lab, minutes
        lab.plot = [{"title": "largest free order (DMA32)", "query": 'kmem_buddy_largest_free_order{zone="DMA32"}'},
                    {"title": "memory cgroups in use", "query": "kmem_memcg_cgroups"},
                    {"title": "slab bytes (all caches)", "query": "sum(kmem_slab_bytes)"},
                    {"title": "alerts firing", "query": 'count(ALERTS{alertstate="firing"}) or vector(0)'}]

    def run(self) -> None:
        lab = self.lab
        lab.mark("activity")
        end = time.time() + self.minutes * 60
        scratch = WORK / "scratch"
        scratch.mkdir(exist_ok=True)
        rounds = 0
        while time.time() < end:
            # Files written, read and removed; short processes; a network namespace; a compile-like walk.
            for i in range(20):
                (scratch / f"f{i}").write_bytes(os.urandom(64 * 1024))
            for path in scratch.iterdir():
                path.read_bytes()
                path.unlink()
            subprocess.run([sys.executable, "-c", "import json, sqlite3; print(len(json.dumps(list(range(10000)))))"],
                           capture_output=True, check=True)
            subprocess.run(["ip", "netns", "add", "healthy"], check=True)
            subprocess.run(["ip", "netns", "delete", "healthy"], check=True)
            sum(1 for _ in Path("/usr/lib/python3").rglob("*.py"))
            lab.scrape()
            rounds += 1
            time.sleep(2)
        lab.measures["rounds"] = rounds
        failing = lab.query('count(ALERTS{alertstate="firing"})')
        lab.check("no alert fires", not failing, f"{failing or 0} firing at the end (all alerts judged from ALERTS)")
        collectors = lab.query("min(kmem_collector_success)")
        lab.check("every collector succeeds", collectors == 1.0, f"min kmem_collector_success {collectors}")
