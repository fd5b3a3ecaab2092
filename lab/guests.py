"""Booting one lab guest: a Debian kernel under QEMU (TCG) with virtme-ng, the host's root file system shared
read-only and one run directory writable; a time limit ends it whatever happens inside.

One guest runs at a time on the machine, whichever lab run asks: under TCG two guests share the cores, and every
time inside them (Prometheus starting, a scrape, a rule's `for:`) stretches until the limits no longer hold."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

PROJECT = Path(__file__).resolve().parent.parent
GUEST_LOCK = Path("/run/lock/kmem-exporter-lab.lock")
KERNEL_GLOBS = {"5.10": "vmlinuz-5.10.0-*-amd64", "6.1": "vmlinuz-6.1.0-*-amd64", "6.12": "vmlinuz-6.12*-amd64"}


@dataclass(frozen=True)
class Kernel:
    series: str  # "6.1"
    release: str  # "6.1.0-57-amd64"

    @property
    def image(self) -> Path:
        return Path("/boot") / f"vmlinuz-{self.release}"

    @property
    def hierarchy(self) -> str:
        """cgroup v1 where the kernel has its memory controller (Debian's 6.12 is built without it)."""
        config = Path("/boot") / f"config-{self.release}"
        return "v2" if "# CONFIG_MEMCG_V1 is not set" in config.read_text() else "v1"


def find_kernels(series: list[str]) -> list[Kernel]:
    kernels = []
    for name in series:
        images = sorted(Path("/boot").glob(KERNEL_GLOBS[name]), key=lambda p: [int(x) if x.isdigit() else x
                        for x in p.name.replace("-", ".").replace("+", ".").split(".")])
        if not images:
            raise SystemExit(f"no {name} kernel in /boot (make lab-setup installs it)")
        kernels.append(Kernel(name, images[-1].name.removeprefix("vmlinuz-")))
    return kernels


def build_module(kernel: Kernel, directory: Path) -> Path:
    """The lab module (lab/kmod) built against the kernel's headers."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("kmem_lab.c", "Kbuild"):
        shutil.copy(PROJECT / "lab" / "kmod" / name, directory / name)
    subprocess.run(["make", "-s", "-C", f"/lib/modules/{kernel.release}/build", f"M={directory}", "modules"],
                   check=True, capture_output=True)
    return directory / "kmem_lab.ko"


def boot(kernel: Kernel, command: str, rwdir: Path, console: Path, memory: str, limit: float,
         append: str = "") -> tuple[int, float]:
    """Run command in a guest of kernel; its exit status (or -1 after the time limit) and the seconds taken."""
    venv_bin = Path(sys.executable).parent
    args = [str(venv_bin / "vng"), "--run", str(kernel.image), "--disable-kvm", "--memory", memory, "--cpus", "2",
            "--rwdir", str(rwdir), "--exec", command]
    if append:
        args += ["--append", append]
    env = dict(os.environ, PATH=f"{venv_bin}:{os.environ['PATH']}")
    with only_guest(), open(console, "wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=PROJECT, start_new_session=True)
        try:
            status = process.wait(limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # QEMU and vng: the guest's session, started here
            process.wait()
            status = -1
    return status, time.monotonic() - started


@contextlib.contextmanager
def only_guest() -> Iterator[None]:
    """Hold the machine's lab-guest lock; another lab run's guest ends within its own time limit."""
    GUEST_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(GUEST_LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"lab: waiting for another run's guest to end ({GUEST_LOCK})", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
