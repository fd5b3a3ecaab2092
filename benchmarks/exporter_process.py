"""What the benchmarks that run the real exporter share: `kmem-exporter serve` on a free loopback port, and the CPU
time and memory of its process from /proc/<pid>."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional, Sequence

PROJECT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serving(flags: Sequence[str], stderr: Optional[int] = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start `kmem-exporter serve FLAGS` and wait until it is ready: the process and its base URL. The benchmark
    exits when the exporter exits or is not ready within 60 s."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "exporter", "serve", f"--web.listen-address=127.0.0.1:{port}",
                                *flags], cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the exporter exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(base + "/-/ready", timeout=5) as response:
                if response.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("the exporter did not become ready within 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields
