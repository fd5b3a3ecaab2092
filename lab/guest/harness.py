"""One lab guest's apparatus: the exporter and Prometheus on loopback, checks, marks and the results file.

Every wait has a deadline; every process started here is stopped at the end. Times are the guest's wall clock,
the clock Prometheus stamps its samples with.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from kmem_exporter.cli import scrape_once
from kmem_exporter.config import parse_args

EXPORTER = "127.0.0.1:9792"
# A second exporter that only the checks scrape: Prometheus's scrapes of the first one share collections with any
# scrape that arrives meanwhile, so a check could be answered from files read before it began.
CHECKER = "127.0.0.1:9793"
PROMETHEUS = "127.0.0.1:9090"
# How long the exporter and Prometheus may take to start: under TCG, with other guests on the machine, minutes.
STARTUP = 360
WORK = Path("/run/kmem-lab")  # guest tmpfs: Prometheus's TSDB, cgroup mounts, the ext4 image


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Lab:
    out: Path
    rules: Path
    scenario: str
    scale: float = 1.0  # field seconds a lab second stands for (lab/guest/exporter.py)
    cgroupfs: Optional[Path] = None
    checker_collectors: list[str] = field(default_factory=list)  # a second exporter with these, for the checks
    marks: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    measures: dict[str, Any] = field(default_factory=dict)
    plot: list[dict[str, str]] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    scrapes: list[tuple[float, str]] = field(default_factory=list)

    # --- start and stop -------------------------------------------------------------------------------------
    def memory_root(self, hierarchy: str) -> Path:
        """The memory controller's root, as a host of that cgroup version has it: cgroup v1's memory hierarchy
        mounted at /run/kmem-lab/cgroup/memory (the exporter's --path.cgroupfs then points there), or the unified
        root with memory enabled for its children."""
        if hierarchy == "v1":
            mount = WORK / "cgroup"
            mount.mkdir(parents=True, exist_ok=True)
            run("mount", "-t", "tmpfs", "kmem-lab", str(mount))
            (mount / "memory").mkdir()
            # favordynmods (6.0+): a process moves between cgroups without waiting for an RCU grace period, which
            # under TCG is most of what the memcg scenario's churn costs; where the kernel lacks it, without.
            options = "memory,favordynmods"
            if subprocess.run(["mount", "-t", "cgroup", "-o", options, "kmem-lab", str(mount / "memory")],
                              capture_output=True).returncode != 0:
                options = "memory"
                run("mount", "-t", "cgroup", "-o", options, "kmem-lab", str(mount / "memory"))
            self.measures["cgroup_mount"] = options
            self.cgroupfs = mount
            return mount / "memory"
        root = Path("/sys/fs/cgroup")
        remounted = subprocess.run(["mount", "-o", "remount,favordynmods", str(root)], capture_output=True)
        self.measures["cgroup_mount"] = "favordynmods" if remounted.returncode == 0 else "as booted"
        write(root / "cgroup.subtree_control", "+memory\n")
        return root

    def start(self) -> None:
        WORK.mkdir(parents=True, exist_ok=True)
        (WORK / "no-debugfs").mkdir(exist_ok=True)
        if not Path("/sys/kernel/debug/extfrag").exists():
            run("mount", "-t", "debugfs", "none", "/sys/kernel/debug")
        self.marks["start"] = time.time()
        args = [sys.executable, "-m", "lab.guest.exporter", str(self.scale), f"--web.listen-address={EXPORTER}",
                # The indices are computed from /proc/buddyinfo, so that each check compares the exporter's
                # arithmetic with the kernel's own debugfs files.
                f"--path.debugfs={WORK / 'no-debugfs'}",
                "--collector.memcg.interval=1s", "--collector.netns.interval=1s",
                # Off by default; on here to show the pageblocks that unmovable allocations take over.
                "--collector.pagetypeinfo"]
        if self.cgroupfs is not None:
            args.append(f"--path.cgroupfs={self.cgroupfs}")
        self.spawn("exporter", args)
        if self.checker_collectors:
            checker = [a for a in args if not a.startswith("--web.listen-address=")]
            checker += [f"--web.listen-address={CHECKER}", "--collector.disable-defaults"]
            checker += [f"--collector.{name}" for name in self.checker_collectors]
            self.spawn("checker", checker)
            wait_until(lambda: http_ok(f"http://{CHECKER}/-/ready"), STARTUP, "the checks' exporter ready")
        config = WORK / "prometheus.yml"
        config.write_text(json.dumps({
            # Scrapes every 2 s (each may take up to 2 s: TCG is about ten times slower than the hardware), rules
            # every 1 s.
            "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in sorted(self.rules.glob("*.yaml"))],
            "scrape_configs": [{"job_name": "kmem-exporter", "static_configs": [{"targets": [EXPORTER]}]}],
        }))
        self.spawn("prometheus", ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={WORK / 'tsdb'}",
                                  f"--web.listen-address={PROMETHEUS}", "--storage.tsdb.retention.time=1d",
                                  "--log.level=warn"])
        wait_until(lambda: self.query("up") == 1.0, STARTUP, "Prometheus scraping the exporter")
        # The background collectors have finished a pass once the exporter is ready.
        wait_until(lambda: http_ok(f"http://{EXPORTER}/-/ready"), STARTUP, "the exporter ready")
        self.marks["ready"] = time.time()

    def spawn(self, name: str, args: list[str]) -> None:
        log = open(self.out / f"{name}.log", "wb")
        self.processes.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))

    def finish(self) -> None:
        self.marks["end"] = time.time()
        time.sleep(2)  # two more evaluations cover the last samples
        try:
            alerts = {"alerts": self.range_query('ALERTS{alertstate="firing"}'),
                      "pending": self.range_query('ALERTS{alertstate="pending"}'),
                      "series": {p["title"]: self.range_query(p["query"]) for p in self.plot}}
        except OSError as error:
            self.check("Prometheus answers at the end", False, str(error))
            alerts = {"alerts": [], "pending": [], "series": {}}
        result = {
            "scenario": self.scenario, "kernel": os.uname().release,
            "cmdline": Path("/proc/cmdline").read_text().strip(), "marks": self.marks,
            "checks": [c.__dict__ for c in self.checks], "measures": self.measures, "plot": self.plot, **alerts,
        }
        (self.out / "result.json").write_text(json.dumps(result, indent=1))
        with gzip.open(self.out / "scrapes.txt.gz", "wt") as f:
            for when, text in self.scrapes:
                f.write(f"# scrape at {when:.3f}\n{text}")
        (self.out / "kernel.log").write_bytes(subprocess.run(["dmesg"], capture_output=True).stdout)
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()

    # --- observations ---------------------------------------------------------------------------------------
    def mark(self, name: str) -> float:
        self.marks[name] = time.time()
        print(f"lab: {name} at {self.marks[name] - self.marks['start']:.1f}s", flush=True)
        return self.marks[name]

    def check(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, bool(passed), detail))
        if not passed:
            print(f"lab: CHECK FAILED {name}: {detail}", flush=True)
        return bool(passed)

    def scrape(self, address: str = EXPORTER) -> dict[str, float]:
        """One scrape of the exporter (or the checks' own), kept as an artifact; its samples by series text."""
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as answer:
            text = answer.read().decode()
        if address == EXPORTER:
            self.scrapes.append((time.time(), text))
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, _, number = line.rpartition(" ")
                samples[series] = float(number)
        return samples

    def scrape_once(self, *collectors: str) -> dict[str, float]:
        """One collection as `kmem-exporter scrape` makes it, with only these collectors, started now: the checks'
        view of the background collectors, which the served exporter runs at its own pace. Made here rather than by
        the command: a new Python process loads the exporter over the guest's 9p root file system, which took a
        minute per check on 5.10 under TCG."""
        # A collection as long as a background pass may take: the memory cgroup walk over 65,535 cgroups takes
        # longer under TCG than the default --collector.timeout (10 s), which would fail it.
        args = ["scrape", "--collector.disable-defaults", "--collector.timeout=240s",
                *(f"--collector.{name}" for name in collectors)]
        if self.cgroupfs is not None:
            args.append(f"--path.cgroupfs={self.cgroupfs}")
        _, config = parse_args(args)
        body, _ = asyncio.run(scrape_once(config))
        samples = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                series, _, number = line.rpartition(" ")
                samples[series] = float(number)
        return samples

    def query(self, expr: str) -> Optional[float]:
        data = self.api("query", {"query": expr})
        return float(data["result"][0]["value"][1]) if data["result"] else None

    def range_query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query_range", {"query": expr, "start": f"{self.marks['start']:.3f}",
                                        "end": f"{time.time():.3f}", "step": "1"})
        return [{"labels": r["metric"], "values": [[float(t), float(v)] for t, v in r["values"]]}
                for r in data["result"]]

    def api(self, path: str, params: dict[str, str]) -> Any:
        url = f"http://{PROMETHEUS}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=60) as answer:
                return json.load(answer)["data"]
        except OSError as error:
            raise OSError(f"Prometheus: {url}: {error}") from error


def wait_until(condition: Callable[[], bool], seconds: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {seconds:.0f}s waiting for {what}")
        time.sleep(every)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def run(*args: str, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def write(path: Path | str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def kernel_lines(pattern: str) -> list[str]:
    """The kernel log's lines that contain pattern (dmesg, without time stamps)."""
    text = subprocess.run(["dmesg", "--notime"], capture_output=True, text=True).stdout
    return [line for line in text.splitlines() if pattern in line]
