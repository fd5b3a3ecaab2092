"""Shared test helpers: fixture trees, the real exporter as a subprocess, the real promtool, and waiting for a
condition with a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar, overload

import pytest
from hypothesis import HealthCheck, settings

# Property tests are judged by what they find, not by how fast a loaded machine runs them: no deadline for an example
# and no health check of how fast examples are made (speed is measured in benchmarks).
settings.register_profile("unhurried", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("unhurried")

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT = Path(__file__).parent.parent
# How long a test waits for something to happen before it fails: far beyond what anything takes, even on a loaded
# machine, since a wait ends as soon as its condition holds.
WAIT_SECONDS = 60.0

T = TypeVar("T")


@overload
def wait_for(what: str, check: Callable[[], Optional[T]], *, timeout: float = ...,
             errors: tuple[type[BaseException], ...] = ...) -> T: ...


@overload
def wait_for(what: str, check: Callable[[], T], until: Callable[[T], object], timeout: float = ...,
             errors: tuple[type[BaseException], ...] = ...) -> T: ...


def wait_for(what: str, check: Callable[[], Any], until: Callable[[Any], object] = bool,
             timeout: float = WAIT_SECONDS, errors: tuple[type[BaseException], ...] = ()) -> Any:
    """Call `check` until `until` holds for what it returns (by default: until it returns something true), and
    return that; an exception in `errors` counts as not yet. Fails naming `what` and the last value (or exception)
    once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        try:
            last: Any = check()
        except errors as err:
            last = err
        else:
            if until(last):
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {str(last)[-3000:]}")
        time.sleep(pause)  # between two looks, not a guess at how long it takes: soon at first, then less often
        pause = min(pause * 1.5, 0.25)


async def wait_for_async(what: str, condition: Callable[[], object], timeout: float = WAIT_SECONDS) -> None:
    """`wait_for` on an event loop: until `condition()` holds, letting the loop run in between."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


def fixture_root(host: str) -> Path:
    root = FIXTURES / host
    assert root.is_dir(), f"no fixture tree {root}"
    return root


def fixture_flags(host: str) -> list[str]:
    """Flags that point every configured root of the exporter into a fixture tree."""
    root = fixture_root(host)
    return [
        f"--path.procfs={root / 'proc'}",
        f"--path.sysfs={root / 'sys'}",
        f"--path.kmsg={root / 'dev' / 'kmsg'}",
    ]


def copy_proc(host: str, tmp_path: Path) -> Path:
    """A copy of a fixture tree's proc/ at `tmp_path/proc`, to change for one test (links copied as links)."""
    proc = tmp_path / "proc"
    shutil.copytree(fixture_root(host) / "proc", proc, symlinks=True)
    return proc


def require_tool(name: str) -> str:
    """The path of an external tool; a test that needs one fails (never skips) when it is missing.
    `make test` installs every tool the tests use."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run the tests with `make test`, which installs it")
    return path


def run_exporter(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m kmem_exporter ARGS` to completion."""
    return subprocess.run([sys.executable, "-m", "kmem_exporter", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=PROJECT)


def scrape_fixture(host: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`kmem-exporter scrape` on a fixture tree."""
    return run_exporter("scrape", *fixture_flags(host), *extra)


def scrape_ok(*args: str) -> str:
    """The exposition printed by `kmem-exporter scrape ARGS`, which must succeed (exit 0)."""
    result = run_exporter("scrape", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def scrape_fixture_ok(host: str, *extra: str) -> str:
    """The exposition of a scrape of a fixture tree, which must succeed (exit 0)."""
    return scrape_ok(*fixture_flags(host), *extra)


def promtool_check_metrics(exposition: str) -> str:
    """What `promtool check metrics` says about an exposition (empty when it is clean)."""
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True,
                            timeout=60)
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else f" (exit {result.returncode})")


def free_port() -> int:
    """A port nothing listened on a moment ago, for an address a test must name before a process is started (another
    process may take it meanwhile). A server the test starts listens on port 0 instead, and the test reads the port
    it got (tcp.listening_port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningExporter:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def get(self, path: str = "/metrics", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def metrics(self) -> str:
        status, _, body = self.get()
        assert status == 200, body
        return body.decode()

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        """True while the process runs; fails with its log once it has exited."""
        if self.process.poll() is not None:
            raise AssertionError(f"the exporter exited with {self.process.returncode}: {self.log()}")
        return True

    def wait_for_log(self, text: str) -> str:
        """The log, once it holds `text`."""
        return wait_for(f"{text!r} in the exporter's log", self.log, lambda log: text in log)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=WAIT_SECONDS)


def start_exporter(args: Sequence[str], log_path: Path, ready: bool = True) -> RunningExporter:
    """Start the real exporter on a loopback port of its own (the kernel chooses it) and wait until it listens, and
    with `ready` until /-/ready answers 200."""
    from tcp import listening_port  # tcp imports this module

    with open(log_path, "w") as log_file:  # the exporter writes to its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "kmem_exporter", "--web.listen-address=127.0.0.1:0", *args],
            stdout=log_file, stderr=subprocess.STDOUT, text=True, cwd=PROJECT,
        )
    try:
        port = listening_port(process, what="the exporter", log=log_path)
        exporter = RunningExporter(process, f"http://127.0.0.1:{port}", log_path)
        if ready:
            wait_for("the exporter to be ready", lambda: exporter.alive() and exporter.get("/-/ready")[0],
                     lambda status: status == 200, errors=(OSError,))
    except BaseException:
        process.kill()
        process.wait(30)
        raise
    return exporter


@pytest.fixture
def exporter_factory(tmp_path: Path) -> Iterator:
    """Start exporters with given flags; all are stopped at the end of the test."""
    started: list[RunningExporter] = []

    def start(*args: str, ready: bool = True) -> RunningExporter:
        exporter = start_exporter(args, tmp_path / f"exporter-{len(started)}.log", ready)
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.stop(signal.SIGKILL)


def is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def debugfs() -> Iterator[Path]:
    """This machine's debugfs at /sys/kernel/debug, mounted for the test when it was not (unmounted afterwards)."""
    if not is_root():
        pytest.fail("mounting and reading debugfs needs root; run the tests as root (`make test`)")
    root = Path("/sys/kernel/debug")
    mounted = False
    if not (root / "extfrag").is_dir():
        subprocess.run([require_tool("mount"), "-t", "debugfs", "none", str(root)], check=True)
        mounted = True
    yield root
    if mounted:
        subprocess.run([require_tool("umount"), str(root)], check=True)


LOG_MESSAGE = re.compile(r' msg="((?:[^"\\]|\\.)*)"')


def log_messages(log: str) -> str:
    """The messages of the exporter's logfmt lines, unescaped (one per line): what a logfmt reader gets back."""
    return "\n".join(json.loads(f'"{quoted}"') for quoted in LOG_MESSAGE.findall(log))
