"""What the benchmarks that run real exporters share: `kmem-exporter serve` (or any exporter) on a free loopback
port, one timed scrape over HTTP, and the CPU time, memory, threads and open files of a process from /proc/<pid>."""

from __future__ import annotations

import gzip
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Callable, Mapping, NamedTuple, Optional, Sequence, Union

PROJECT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
Stderr = Union[int, IO[bytes], None]


def kmem_exporter_command() -> list[str]:
    """The `kmem-exporter` command installed beside this interpreter (the project's venv), or `python -m kmem_exporter`
    when the console script is not there."""
    script = Path(sys.executable).parent / "kmem-exporter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kmem_exporter"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def limit_open_files(limit: int) -> None:
    """Lower this process's soft RLIMIT_NOFILE to `limit` (used in a child before exec)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))


def raise_open_files(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE to at least `wanted` where allowed (root may raise the hard limit);
    returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def child_setup(open_files: Optional[int] = None, cpus: Optional[set[int]] = None
                ) -> Optional[Callable[[], None]]:
    """What a child process does before it runs its program (Popen's preexec_fn): set its soft RLIMIT_NOFILE to
    `open_files` and its CPUs to `cpus`, each when given; None when neither is."""
    if not open_files and not cpus:
        return None

    def prepare_child() -> None:
        if open_files:
            limit_open_files(open_files)
        if cpus:
            os.sched_setaffinity(0, cpus)
    return prepare_child


def start_process(command: Sequence[str], ready_url: str, stderr: Stderr = None, open_files: Optional[int] = None,
                  what: str = "the exporter", cpus: Optional[set[int]] = None) -> subprocess.Popen[bytes]:
    """Start `command` and wait until `ready_url` answers 200. The benchmark exits when the process exits or is
    not ready within 60 s. `open_files` sets the child's soft RLIMIT_NOFILE, `cpus` the CPUs it may run on."""
    process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=stderr,
                               preexec_fn=child_setup(open_files, cpus))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited with status {process.returncode}: {' '.join(command)}")
        try:
            with urllib.request.urlopen(ready_url, timeout=5) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit(f"{what} did not become ready within 60 s: {' '.join(command)}")


def start_serving(flags: Sequence[str], stderr: Stderr = None, open_files: Optional[int] = None,
                  cpus: Optional[set[int]] = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start `kmem-exporter serve FLAGS` on a free loopback port and wait until it is ready: the process and its
    base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [*kmem_exporter_command(), "serve", f"--web.listen-address=127.0.0.1:{port}", *flags]
    return start_process(command, base + "/-/ready", stderr, open_files, cpus=cpus), base


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Fetched(NamedTuple):
    latency: float  # seconds from sending the request to the last byte of the answer
    status: int
    body: bytes  # decompressed
    wire_bytes: int  # body bytes as sent (compressed when the server used gzip)


def fetch(url: str, headers: Optional[Mapping[str, str]] = None, timeout: float = 60) -> Fetched:
    """One GET over a new connection; an HTTP error status is returned, not raised."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    started = time.perf_counter()
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        raw = response.read()
        encoding = response.headers.get("Content-Encoding", "")
        status = response.status
    latency = time.perf_counter() - started
    return Fetched(latency, status, gzip.decompress(raw) if encoding == "gzip" else raw, len(raw))


def scrape(url: str, headers: Optional[Mapping[str, str]] = None, timeout: float = 60) -> tuple[float, bytes]:
    """Seconds from sending the request to the last byte of a 200 answer, and the (decompressed) body."""
    result = fetch(url, headers, timeout)
    if result.status != 200:
        raise OSError(f"{url}: HTTP {result.status}")
    return result.latency, result.body


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def series_count(exposition: bytes) -> int:
    return sum(1 for line in exposition.splitlines() if line and not line.startswith(b"#"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc/<pid>/status."""
    return {key: value for key, value in status_fields(pid).items() if key in ("VmRSS", "VmHWM")}


def status_fields(pid: int) -> dict[str, int]:
    """The numeric fields of /proc/<pid>/status that matter here: VmRSS, VmHWM (KiB) and Threads."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            fields[key] = int(value.split()[0])
    return fields


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
