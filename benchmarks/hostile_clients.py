"""Heavy and hostile clients against kmem-exporter on this host: does it stay up, bounded and fair?

    .venv/bin/python benchmarks/hostile_clients.py [--quick] [--url URL --pid PID] [--exporter-args "..."]
                                                   [--shared-cpus]

Starts `kmem-exporter serve` (default settings, this host's /proc and /sys, loopback, its soft open-file limit set
to 1024 as under a default systemd or container runtime; its log captured) or targets a running one with --url and
--pid. Then, each phase bounded in count and time, all traffic to 127.0.0.1:
  odd        HEAD /metrics, `Accept: application/openmetrics-text; version=abc`, `Accept-Encoding: gzip;q=0`
  load       one client for a while, then 50 concurrent scrapers (curl's parallel transfers, kept-alive
             connections; with gzip as Prometheus asks, then without; on other CPUs than the exporter started here,
             half of them each, unless --shared-cpus): latency p50, p90, p99 of the 200s and
             the p99 ratio; the 10 beyond --web.max-requests (40) wait for a slot (a 503 would be asked again at once)
  soak       10,000 scrapes one after another
  pipeline   900 connections each sending 20 `GET /metrics` at once and reading nothing, held 10 s; then what can
             be read in 5 s (200s, 503s), and whether a normal scrape still works
  idle       1,100 connections that send nothing, held 30 s, while a normal client scrapes every second
  slowloris  200 connections sending one header byte per second: how long until the exporter closes each
  expect, burst, tls, authflood, nonreader, hugeslab, hugeslab32: see hostile_round2.py (each against an exporter
             of its own)
For each phase: RSS before, after and peak (sampled every 0.1 s), threads and open files (/proc/<pid>), whether the
exporter is alive, and how much it logged. A started exporter whose RSS passes --rss-guard is killed (as a memory
limit would) and started again for the next phase. --quick shortens every phase (about a minute in all).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import re
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, TextIO
from urllib.parse import urlsplit

import hostile_round2
from exporter_process import (child_setup, fetch, open_fds, percentile, raise_open_files, start_serving, status_fields,
                              stop)

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})")


@dataclass(frozen=True)
class Plan:
    baseline_s: float
    load_s: float
    scrapers: int
    soak_scrapes: int
    soak_max_s: float
    pipelined_connections: int
    pipelined_requests: int
    pipeline_hold_s: float
    idle_connections: int
    idle_hold_s: float
    slowloris_connections: int
    slowloris_max_s: float


FULL = Plan(15, 60, 50, 10000, 1800, 900, 20, 10, 1100, 30, 200, 120)
QUICK = Plan(4, 10, 50, 300, 30, 900, 20, 5, 1100, 10, 200, 12)


@dataclass
class Snapshot:
    rss_kib: int = 0
    threads: int = 0
    fds: int = 0
    log_bytes: int = 0


@dataclass
class PhaseResult:
    name: str
    outcome: list[str]
    before: Snapshot
    after: Optional[Snapshot]
    peak: Snapshot
    notes: list[str] = field(default_factory=list)


class Exporter:
    """The exporter under test: started here (restartable, log captured, RSS-guarded) or given by --url/--pid."""

    def __init__(self, url: Optional[str], pid: Optional[int], flags: list[str], open_files: int,
                 cpus: Optional[set[int]] = None, load_cpus: Optional[set[int]] = None) -> None:
        """`cpus`: those the exporter started here runs on; `load_cpus`: those of the load phase's scrapers."""
        self.flags, self.open_files, self.cpus, self.load_cpus = flags, open_files, cpus, load_cpus
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.log_path: Optional[Path] = None
        self.restarts = 0
        if url:
            if pid is None:
                sys.exit("--url needs --pid (for RSS, threads and open files)")
            self.base, self.pid = url.rstrip("/").removesuffix("/metrics"), pid
        else:
            self.log_path = Path(tempfile.mkstemp(prefix="kmem-hostile-", suffix=".log")[1])
            self.base, self.pid = self.start()

    def start(self) -> tuple[str, int]:
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            self.process, base = start_serving(self.flags, stderr=log, open_files=self.open_files, cpus=self.cpus)
        return base, self.process.pid

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.base)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return Path(f"/proc/{self.pid}").exists()

    def ensure_running(self) -> Optional[str]:
        """Start the exporter again when it died (only one started here); a note saying so."""
        if self.alive():
            return None
        if self.process is None:
            sys.exit("the exporter under test is gone")
        status = self.process.returncode
        self.base, self.pid = self.start()
        self.restarts += 1
        return f"restarted (the previous process ended with status {status})"

    def snapshot(self) -> Optional[Snapshot]:
        try:
            fields = status_fields(self.pid)
            fds = open_fds(self.pid)
        except OSError:
            return None
        log = self.log_path.stat().st_size if self.log_path else 0
        return Snapshot(fields.get("VmRSS", 0), fields.get("Threads", 0), fds, log)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)


class Sampler:
    """Samples the exporter's RSS, threads and open files every 0.1 s in a thread, keeping the peaks; kills a
    started exporter whose RSS passes the guard."""

    def __init__(self, exporter: Exporter, guard_kib: int) -> None:
        self.exporter, self.guard_kib = exporter, guard_kib
        self.peak, self.guard_fired = Snapshot(), False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            now = self.exporter.snapshot()
            if now is None:
                continue
            rss = now.rss_kib
            self.peak = Snapshot(max(self.peak.rss_kib, rss), max(self.peak.threads, now.threads),
                                 max(self.peak.fds, now.fds))
            if rss > self.guard_kib and self.exporter.process is not None and not self.guard_fired:
                self.guard_fired = True
                self.exporter.kill()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def request(method: str = "GET", path: str = "/metrics", headers: Optional[dict[str, str]] = None,
            close: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def timed_get(address: tuple[str, int], timeout: float) -> tuple[int, float]:
    """Status (0 on a connection error or timeout) and seconds of one scrape read to the end."""
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
        try:
            writer.write(request())
            data = await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()
    except (OSError, asyncio.TimeoutError):
        return 0, time.perf_counter() - started
    match = STATUS_LINE.match(data)
    return (int(match.group(1)) if match else 0), time.perf_counter() - started


async def scrape_for(address: tuple[str, int], clients: int, seconds: float, max_each: int
                     ) -> tuple[list[float], dict[int, int]]:
    """`clients` scrapers in a loop until `seconds` pass (at most `max_each` scrapes each): latencies of the 200s
    and the count of each status."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client() -> None:
        for _ in range(max_each):
            if time.monotonic() >= deadline:
                return
            status, latency = await timed_get(address, 30)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append(latency)

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, statuses


def latency_summary(latencies: list[float]) -> str:
    if not latencies:
        return "no successful scrape"
    return (f"p50 {statistics.median(latencies) * 1000:.0f} ms, p90 {percentile(latencies, 0.9) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms")


def statuses_text(statuses: dict[int, int]) -> str:
    return ", ".join(f"{'failed' if s == 0 else s}: {n}" for s, n in sorted(statuses.items()))


def phase_odd(exporter: Exporter, plan: Plan) -> list[str]:
    cases = [("HEAD /metrics", "HEAD", {}),
             ("Accept: openmetrics version=abc", "GET", {"Accept": "application/openmetrics-text; version=abc"}),
             ("Accept-Encoding: gzip;q=0", "GET", {"Accept-Encoding": "gzip;q=0"})]
    lines = []
    for label, method, headers in cases:
        started = time.perf_counter()
        data = raw_exchange(exporter.address, request(method, headers=headers), 30)
        head, _, body = data.partition(b"\r\n\r\n")
        match = STATUS_LINE.match(head)
        encoding = re.search(rb"(?im)^content-encoding:\s*(\S+)", head)
        lines.append(f"{label}: {int(match.group(1)) if match else 'no answer'}"
                     f"{', Content-Encoding ' + encoding.group(1).decode() if encoding else ''}, body {len(body)} B, "
                     f"{(time.perf_counter() - started) * 1000:.0f} ms")
    return lines


def raw_exchange(address: tuple[str, int], payload: bytes, timeout: float) -> bytes:
    """Send `payload` on a new connection and read until the server closes it (or `timeout`)."""
    deadline = time.monotonic() + timeout
    chunks = []
    try:
        with socket.create_connection(address, timeout=timeout) as s:
            s.sendall(payload)
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)


def curl_scrapes(base: str, clients: int, seconds: float, headers: dict[str, str], cpus: Optional[set[int]] = None
                 ) -> tuple[list[float], dict[int, int]]:
    """`clients` concurrent scrapers for `seconds`, each starting its next scrape as soon as one ends, over kept-alive
    connections as Prometheus scrapes: curl's parallel transfers, a C client, so that the load generator takes
    little of the CPU the exporter needs (none of it when `cpus` are other CPUs than the exporter's). Latencies of
    the 200s, and the count of each status."""
    curl = shutil.which("curl")
    if curl is None:
        sys.exit("curl is needed for the load phase: `make tools` installs it")
    command = [curl, "--silent", "--no-progress-meter", "--parallel", "--parallel-immediate",
               "--parallel-max", str(clients), "--output", "/dev/null", "--write-out", "%{http_code} %{time_total}\n",
               *(part for name, value in headers.items() for part in ("--header", f"{name}: {value}")),
               f"{base}/metrics?scrape=[1-100000000]"]
    with tempfile.TemporaryFile() as out:
        # Each transfer's line written as it ends (stdbuf: curl's stdout to a file is otherwise block-buffered), so
        # that stopping curl loses only the transfers under way.
        process = subprocess.Popen(["stdbuf", "-oL", *command], stdout=out, stderr=subprocess.DEVNULL,
                                   preexec_fn=child_setup(cpus=cpus))
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(10)
        out.seek(0)
        rows = [line.split() for line in out.read().decode().splitlines()]
    statuses: dict[int, int] = {}
    latencies = []
    for status, seconds_taken in (row for row in rows if len(row) == 2):
        statuses[int(status)] = statuses.get(int(status), 0) + 1
        if status == "200":
            latencies.append(float(seconds_taken))
    return latencies, statuses


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user and system, its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_answer_ms(cpu: float, statuses: dict[int, int]) -> str:
    answers = sum(statuses.values())
    return f"exporter CPU {cpu * 1000 / answers:.2f} ms per answer" if answers else "no answers"


def phase_load(exporter: Exporter, plan: Plan) -> list[str]:
    lines = []
    for label, headers in (("gzip, as Prometheus asks", {"Accept-Encoding": "gzip"}), ("no gzip", {})):
        cpu = cpu_seconds(exporter.pid)
        single, single_statuses = curl_scrapes(exporter.base, 1, plan.baseline_s, headers, exporter.load_cpus)
        cpu, single_cpu = cpu_seconds(exporter.pid), cpu_seconds(exporter.pid) - cpu
        loaded, statuses = curl_scrapes(exporter.base, plan.scrapers, plan.load_s, headers, exporter.load_cpus)
        loaded_cpu = cpu_seconds(exporter.pid) - cpu
        lines += [f"{label}: 1 client, {plan.baseline_s:g} s: {latency_summary(single)} "
                  f"({statuses_text(single_statuses)}; {per_answer_ms(single_cpu, single_statuses)})",
                  f"{label}: {plan.scrapers} clients, {plan.load_s:g} s: {latency_summary(loaded)} "
                  f"({statuses_text(statuses)}; {sum(statuses.values()) / plan.load_s:.1f} answers/s; "
                  f"{per_answer_ms(loaded_cpu, statuses)})"]
        if single and loaded:
            lines.append(f"{label}: p99 ratio {plan.scrapers} clients / 1 client: "
                         f"{percentile(loaded, 0.99) / percentile(single, 0.99):.1f}x (target: at most 3x)")
    return lines


def phase_soak(exporter: Exporter, plan: Plan) -> list[str]:
    started = time.monotonic()
    latencies, statuses = asyncio.run(scrape_for(exporter.address, 1, plan.soak_max_s, plan.soak_scrapes))
    return [f"{sum(statuses.values())} scrapes in {time.monotonic() - started:.0f} s: {latency_summary(latencies)} "
            f"({statuses_text(statuses)})"]


def connect_batch(address: tuple[str, int], count: int, deadline: float) -> list[socket.socket]:
    """Start `count` non-blocking connections at once; those established before `deadline`."""
    selector = selectors.DefaultSelector()
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if s.connect_ex(address) in (0, errno.EINPROGRESS):
            selector.register(s, selectors.EVENT_WRITE)
        else:
            s.close()
    connected = []
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            selector.unregister(ready)
            if ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected.append(ready)
            else:
                ready.close()
    for key in list(selector.get_map().values()):
        assert isinstance(key.fileobj, socket.socket)
        key.fileobj.close()
    selector.close()
    return connected


def open_connections(address: tuple[str, int], count: int, timeout: float, batch: int = 50
                     ) -> tuple[list[socket.socket], int]:
    """`count` connections opened `batch` at a time with a short pause between batches, so that the exporter can
    accept them (connections started all at once overflow its listen backlog and never reach it); those
    established within `timeout`, and how many were not."""
    deadline = time.monotonic() + timeout
    connected: list[socket.socket] = []
    for start in range(0, count, batch):
        if time.monotonic() >= deadline:
            break
        connected += connect_batch(address, min(batch, count - start), deadline)
        time.sleep(0.02)
    return connected, count - len(connected)


def close_all(sockets: list[socket.socket]) -> None:
    for s in sockets:
        s.close()


class ResponseCounter:
    """Counts the statuses of pipelined responses as their bytes arrive, keeping only headers in memory (bodies are
    skipped by Content-Length; after a response without one, nothing more is counted)."""

    def __init__(self, statuses: dict[int, int]) -> None:
        self.statuses, self.head, self.skip, self.lost = statuses, b"", 0, False

    def feed(self, data: bytes) -> None:
        while data and not self.lost:
            if self.skip:
                taken = min(self.skip, len(data))
                self.skip, data = self.skip - taken, data[taken:]
                continue
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                self.lost = len(self.head) > 65536
                return
            head, data, self.head = self.head[:end], self.head[end + 4:], b""
            match = STATUS_LINE.match(head)
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if match is None or length is None:
                self.lost = True
                return
            self.statuses[int(match.group(1))] = self.statuses.get(int(match.group(1)), 0) + 1
            self.skip = int(length.group(1))


def read_for(sockets: list[socket.socket], seconds: float) -> tuple[dict[int, int], int]:
    """Read from every socket for `seconds`: statuses of the responses read, and connections the exporter closed."""
    selector = selectors.DefaultSelector()
    statuses: dict[int, int] = {}
    counters = {}
    for s in sockets:
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ)
        counters[s] = ResponseCounter(statuses)
    closed = 0
    deadline = time.monotonic() + seconds
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            try:
                chunk = ready.recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                counters[ready].feed(chunk)
            else:
                closed += 1
                selector.unregister(ready)
    selector.close()
    return statuses, closed


def normal_scrape(exporter: Exporter) -> str:
    if not exporter.alive():
        return "exporter dead"
    result = None
    try:
        result = fetch(exporter.base + "/metrics", timeout=30)
    except OSError as error:
        return f"failed ({error})"
    return f"HTTP {result.status} in {result.latency * 1000:.0f} ms"


def phase_pipeline(exporter: Exporter, plan: Plan) -> list[str]:
    sockets, refused = open_connections(exporter.address, plan.pipelined_connections, 10)
    burst = request(close=False) * plan.pipelined_requests
    sent = 0
    for s in sockets:
        try:
            s.send(burst)
            sent += 1
        except OSError:
            pass
    time.sleep(plan.pipeline_hold_s)
    alive_after_hold = exporter.alive()
    statuses, closed = read_for(sockets, 5)
    close_all(sockets)
    time.sleep(1)
    return [f"{len(sockets)} connected ({refused} not), {sent} sent {plan.pipelined_requests} requests each; "
            f"alive after {plan.pipeline_hold_s:g} s: {'yes' if alive_after_hold else 'NO'}",
            f"answers read in 5 s: {statuses_text(statuses) or 'none'}; {closed} connections closed by the exporter",
            f"normal scrape afterwards: {normal_scrape(exporter)}"]


def phase_idle(exporter: Exporter, plan: Plan) -> list[str]:
    sockets, failed_connects = open_connections(exporter.address, plan.idle_connections, 10)
    ok = failed = 0
    deadline = time.monotonic() + plan.idle_hold_s
    while time.monotonic() < deadline:
        tick = time.monotonic()
        try:
            status = fetch(exporter.base + "/metrics", timeout=min(5.0, max(0.1, deadline - tick))).status
        except OSError:
            status = 0
        ok, failed = (ok + 1, failed) if status == 200 else (ok, failed + 1)
        time.sleep(max(0.0, 1 - (time.monotonic() - tick)))
    close_all(sockets)
    return [f"{len(sockets)} idle connections held ({failed_connects} not established in 10 s)",
            f"scrapes every second meanwhile: {ok} succeeded, {failed} failed",
            f"normal scrape afterwards: {normal_scrape(exporter)}"]


def phase_slowloris(exporter: Exporter, plan: Plan) -> list[str]:
    sockets, not_connected = open_connections(exporter.address, plan.slowloris_connections, 10)
    opening = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    started = time.monotonic()
    closed_after: dict[socket.socket, float] = {}
    for second in range(int(plan.slowloris_max_s) + 1):
        byte = opening[second:second + 1] or b"a"
        for s in sockets:
            if s in closed_after:
                continue
            try:
                if s.recv(65536) == b"":
                    closed_after[s] = time.monotonic() - started
                    continue
            except BlockingIOError:
                pass
            except OSError:
                closed_after[s] = time.monotonic() - started
                continue
            try:
                s.send(byte)
            except OSError:
                closed_after[s] = time.monotonic() - started
        if len(closed_after) == len(sockets):
            break
        time.sleep(max(0.0, started + second + 1 - time.monotonic()))
    close_all(sockets)
    times = sorted(closed_after.values())
    closed = (f"closed by the exporter: {len(times)}, after median {statistics.median(times):.0f} s, max "
              f"{times[-1]:.0f} s" if times else "closed by the exporter: none")
    return [f"{len(sockets)} connections ({not_connected} not established), one header byte a second for up to "
            f"{plan.slowloris_max_s:g} s", f"{closed}; still open at the end: {len(sockets) - len(times)}"]


def own_exporter_phase(name: str) -> Callable[[Exporter, Plan], list[str]]:
    """A phase of hostile_round2.py, against an exporter of its own."""
    def run(exporter: Exporter, plan: Plan) -> list[str]:
        with hostile_round2.workdir() as work:
            return hostile_round2.PHASES[name](work)
    return run


PHASES: dict[str, Callable[[Exporter, Plan], list[str]]] = {
    "odd": phase_odd, "load": phase_load, "soak": phase_soak, "pipeline": phase_pipeline, "idle": phase_idle,
    "slowloris": phase_slowloris, **{name: own_exporter_phase(name) for name in hostile_round2.PHASES},
}


def run_phase(name: str, exporter: Exporter, plan: Plan, guard_kib: int) -> PhaseResult:
    notes = [note] if (note := exporter.ensure_running()) else []
    before = exporter.snapshot() or Snapshot()
    with Sampler(exporter, guard_kib) as sampler:
        outcome = PHASES[name](exporter, plan)
    time.sleep(0.5)
    if sampler.guard_fired:
        notes.append(f"killed by the benchmark's RSS guard at {guard_kib // 1024} MiB (as a memory limit would)")
    elif not exporter.alive():
        notes.append("the exporter DIED during this phase")
    after = exporter.snapshot()
    peak = sampler.peak
    for seen in (before, after):
        if seen is not None:
            peak = Snapshot(max(peak.rss_kib, seen.rss_kib), max(peak.threads, seen.threads), max(peak.fds, seen.fds))
    return PhaseResult(name, outcome, before, after, peak, notes)


def print_results(results: list[PhaseResult], out: TextIO = sys.stdout) -> None:
    """One row per phase: before -> after (peak) of RSS, threads and open files, the log's growth, the outcome."""
    print(f"{'phase':<10} {'RSS MiB':>16} {'threads':>12} {'fds':>16} {'log KiB':>8}  alive", file=out)
    for r in results:
        a = r.after

        def cell(before: int, after: Optional[int], peak: int) -> str:
            return f"{before}->{after if after is not None else '-'} ({peak})"

        rss = cell(r.before.rss_kib // 1024, a.rss_kib // 1024 if a else None, r.peak.rss_kib // 1024)
        print(f"{r.name:<10} {rss:>16} "
              f"{cell(r.before.threads, a.threads if a else None, r.peak.threads):>12} "
              f"{cell(r.before.fds, a.fds if a else None, r.peak.fds):>16} "
              f"{'+' + str((a.log_bytes - r.before.log_bytes) // 1024) if a else '-':>8}  {'yes' if a else 'NO'}",
              file=out)
        for line in [*r.outcome, *r.notes]:
            print(f"{'':<12}{line}", file=out)
    print("(before->after (peak); peaks sampled every 0.1 s during the phase)", file=out)


def split_cpus(shared: bool) -> tuple[Optional[set[int]], Optional[set[int]]]:
    """The CPUs of the exporter started here and of the load generator: each half of those this process may use
    (the exporter the first), or none (both everywhere) when shared or when there is only one."""
    cpus = sorted(os.sched_getaffinity(0))
    if shared or len(cpus) < 2:
        return None, None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases: about a minute in all")
    parser.add_argument("--url", help="target this running exporter (base URL) instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: the exporter's pid")
    parser.add_argument("--exporter-args", default="", help="more flags for the exporter started here")
    parser.add_argument("--exporter-open-files", type=int, default=1024,
                        help="soft open-file limit of the exporter started here (default: 1024)")
    parser.add_argument("--rss-guard", type=int, default=1024, help="MiB; a started exporter above it is killed")
    parser.add_argument("--keep-log", action="store_true", help="keep the started exporter's log file")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    parser.add_argument("--shared-cpus", action="store_true",
                        help="let the exporter started here and the load phase's scrapers share every CPU (default: "
                             "each on its own half of them, as scrapers on other machines take none of a node's CPU)")
    args = parser.parse_args()
    phases = args.phases.split(",")
    if unknown := set(phases) - set(PHASES):
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    plan = QUICK if args.quick else FULL
    limit = raise_open_files(plan.pipelined_connections + plan.idle_connections + plan.slowloris_connections + 3400)
    print(f"load average at start: {'%.2f %.2f %.2f' % os.getloadavg()}; {os.cpu_count()} CPUs; "
          f"{os.uname().release}; {'quick' if args.quick else 'full'} run; benchmark open-file limit {limit}")
    exporter_cpus, load_cpus = split_cpus(args.shared_cpus or bool(args.url))
    exporter = Exporter(args.url, args.pid, ["--path.procfs=/proc", "--path.sysfs=/sys",
                                             *shlex.split(args.exporter_args)], args.exporter_open_files,
                        exporter_cpus, load_cpus)
    started_here = f", open-file limit {args.exporter_open_files}" if exporter.process else ""
    started_here += (f"; exporter on CPUs {sorted(exporter_cpus)}, load generator on {sorted(load_cpus)}"
                     if exporter_cpus and load_cpus else "; exporter and load generator share the CPUs")
    print(f"exporter pid {exporter.pid} at {exporter.base}{started_here}", flush=True)
    start = exporter.snapshot()
    results = []
    try:
        for name in phases:
            results.append(run_phase(name, exporter, plan, args.rss_guard * 1024))
            print(f"  {name} done", file=sys.stderr, flush=True)
    finally:
        end = exporter.snapshot()
        exporter.close()
    print_results(results)
    if start and end:
        print(f"whole run: RSS {start.rss_kib / 1024:.0f} -> {end.rss_kib / 1024:.0f} MiB, threads {start.threads} -> "
              f"{end.threads}, fds {start.fds} -> {end.fds}, log +{(end.log_bytes - start.log_bytes) / 1024:.0f} KiB"
              f", restarts {exporter.restarts}")
    if exporter.log_path:
        text = exporter.log_path.read_text(errors="replace")
        print(f"exporter log: {len(text)} bytes, {text.count(chr(10))} lines, {text.count('Traceback')} tracebacks"
              + (f" ({exporter.log_path})" if args.keep_log else ""))
        if not args.keep_log:
            exporter.log_path.unlink()


if __name__ == "__main__":
    main()
