"""Scenario: OOM kills in a memory cgroup with a small limit; exactly one event is counted per kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.guest.harness import Lab, kernel_lines, write

HOG = "b = []\nwhile True:\n    b.append(bytearray(1 << 20))\n"


class Oom:
    def __init__(self, lab: Lab, root: Path, hierarchy: str, kills: int) -> None:
        self.lab, self.root, self.hierarchy, self.kills = lab, root, hierarchy, kills
        lab.plot = [{"title": "OOM kills counted", "query": 'kmem_kernel_log_events_total{event="oom_kill"}'},
                    {"title": "oom_kill (vmstat)", "query": "kmem_vmstat_oom_kill_total"}]

    def cgroup(self) -> Path:
        path = self.root / "hog"
        path.mkdir()
        if self.hierarchy == "v1":
            write(path / "memory.limit_in_bytes", str(64 << 20))
        else:
            write(path / "memory.max", str(64 << 20))
            write(path / "memory.swap.max", "0")
        return path

    def run(self) -> None:
        lab = self.lab
        path = self.cgroup()
        lab.mark("kills")
        codes = []
        for _ in range(self.kills):
            procs = str(path / "cgroup.procs")
            child = subprocess.Popen([sys.executable, "-c", HOG],
                                     preexec_fn=lambda: write(procs, str(os.getpid())))
            codes.append(child.wait(300))
            time.sleep(3)
        lab.mark("failure")
        lab.check("every hog is killed by SIGKILL", codes == [-signal.SIGKILL] * self.kills, f"{codes}")
        time.sleep(5)
        samples = lab.scrape()
        counted = samples.get('kmem_kernel_log_events_total{event="oom_kill"}', 0.0)
        logged = kernel_lines("Killed process")
        events = (path / ("memory.events" if self.hierarchy == "v2" else "memory.oom_control")).read_text()
        kernel_kills = int(dict(line.split() for line in events.splitlines())["oom_kill"])
        lab.measures["kills"] = {"processes": len(codes), "killed_process_lines": len(logged),
                                 "memcg_oom_kill": kernel_kills, "exporter": counted}
        lab.check("exactly one event per kill", counted == self.kills == len(logged) == kernel_kills,
                  f"exporter {counted:.0f}, 'Killed process' lines {len(logged)}, memcg oom_kill {kernel_kills}")
