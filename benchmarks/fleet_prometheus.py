"""A real Prometheus on a simulated fleet's history: backfill (promtool), serve, query, and evaluate the alerts.

    with FleetPrometheus.backfilled(history_dir, work_dir) as prometheus:
        prometheus.query_range('count(up == 0)', start, end, 60)

The history (benchmarks/fleet_history.py) becomes TSDB blocks with `promtool tsdb create-blocks-from openmetrics`;
the recording rules of alerts/*.yaml are then backfilled with `promtool tsdb create-blocks-from rules` against the
running server, a rule that reads another rule's output in a later pass, and the server restarts on all blocks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import yaml

from exporter_process import free_port, stop

PROJECT = Path(__file__).resolve().parents[1]
ALERTS = PROJECT / "alerts"
READY_TIMEOUT = 120.0


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is not installed (`make tools` installs Debian's prometheus)")
    return path


def rules(kind: str) -> list[dict[str, Any]]:
    """Every rule of alerts/*.yaml that has `kind` ("record" or "alert")."""
    found = []
    for path in sorted(ALERTS.glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if kind in rule]
    return found


def record_passes(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The recording rules in passes: a rule that reads another's output comes in a later pass than it."""
    names = {rule["record"] for rule in records}
    needs = {rule["record"]: {n for n in names if re.search(rf"(?<![\w:]){re.escape(n)}(?![\w:])", rule["expr"])}
             for rule in records}
    done: set[str] = set()
    passes = []
    while len(done) < len(records):
        ready = [rule for rule in records if rule["record"] not in done and needs[rule["record"]] <= done]
        if not ready:
            raise ValueError("recording rules depend on each other in a cycle")
        passes.append(ready)
        done |= {rule["record"] for rule in ready}
    return passes


class FleetPrometheus:
    """A Prometheus server on a TSDB directory, queried through its HTTP API."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data = data
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    # --- lifecycle ---

    def start(self) -> None:
        config = self.data.parent / "prometheus.yml"
        config.write_text("global: {}\n")
        self.process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={self.data}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=30d",
             "--query.max-samples=500000000", "--log.level=warn"],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"prometheus not ready after {READY_TIMEOUT} s: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, timeout=60)  # a large TSDB takes a while to close
        self.process = None

    def __enter__(self) -> FleetPrometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    def backfilled(cls, history: Path, work: Path) -> FleetPrometheus:
        """Backfill history/history.om and the recording rules into work/data, and start a server on it."""
        manifest = json.loads((history / "manifest.json").read_text())
        data = work / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        run([tool("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(history / "history.om"), str(data)])
        server = cls(data, work / "prometheus.log")
        server.start()
        try:
            for number, records in enumerate(record_passes(rules("record"))):
                rule_file = work / f"records-{number}.yaml"
                rule_file.write_text(yaml.safe_dump({"groups": [{"name": f"pass-{number}", "rules": records}]}))
                blocks = work / f"rule-blocks-{number}"
                shutil.rmtree(blocks, ignore_errors=True)
                run([tool("promtool"), "tsdb", "create-blocks-from", "rules", f"--url={server.url}",
                     f"--start={manifest['start']}", f"--end={manifest['end']}",
                     f"--eval-interval={manifest['interval']}s", f"--output-dir={blocks}", str(rule_file)])
                server.stop()
                for block in blocks.iterdir():
                    block.rename(data / block.name)
                server.start()
        except BaseException:
            server.stop()
            raise
        return server

    # --- queries ---

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=600) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{path} {params}: {error.read().decode(errors='replace')}") from None
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr, time=str(at))["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return list(self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))["result"])

    def label_values(self, selector: str, label: str, start: float, end: float) -> list[str]:
        return list(self.api(f"label/{label}/values", **{"match[]": selector, "start": str(start),
                                                          "end": str(end)}))

    def firing(self, end: float, step: float) -> Iterator[dict[str, str]]:
        """The alerts of alerts/*.yaml firing at `end`: those whose expression held at every evaluation (every
        `step` seconds) of the `for` duration before it, as Prometheus evaluates them. Labels with alertname."""
        for rule in rules("alert"):
            duration = seconds(rule.get("for", "0s"))
            if duration == 0:
                results = self.query(rule["expr"], end)
                held = [r["metric"] for r in results]
            else:
                steps = int(duration // step) + 1
                results = self.query_range(rule["expr"], end - duration, end, step)
                held = [r["metric"] for r in results if len(r["values"]) == steps]
            for labels in held:
                labels = {key: value for key, value in labels.items() if key != "__name__"}
                yield {**labels, **rule.get("labels", {}), "alertname": rule["alert"]}


def seconds(duration: str) -> float:
    """A Prometheus duration of one unit (5m, 1h, 30s) in seconds."""
    match = re.fullmatch(r"(\d+)([smhd])", duration)
    if not match:
        raise ValueError(f"unsupported duration {duration!r}")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def run(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed ({result.returncode}): {result.stdout}{result.stderr}")
