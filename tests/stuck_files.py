"""Regular files whose reads block: a small read-only FUSE filesystem for tests of reads stuck in the kernel.

`stuck_tree(source, mountpoint, blocked={"proc/vmstat"})` mounts a copy of the tree at `source` (files, directories
and symbolic links, taken when it mounts) at `mountpoint`. Every file is a regular file that the exporter reads as
it would read procfs; a read of a blocked file waits, in the kernel of the reading process, until the test calls
`release(name)`, then returns the file's real content. The tree counts the reads of each file that have started
and that are held, so a test can tell when a read is stuck and that no second read began. An `endless` file never
ends: like a procfs file, it says it is empty (size 0), and every read returns as much as asked.

The FUSE server runs in a thread of the test process (libfuse 3 through mfusepy, multithreaded, `allow_other` so
a process of another user can read too). Leaving the context releases every held read and unmounts, forcibly
when a reader still holds the mount: a failed test never leaves a mount behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import signal
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterator

import pytest

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # mfusepy would take libfuse 2 first when both are installed
import mfusepy  # noqa: E402  (after choosing the library, which mfusepy loads when imported)

from conftest import WAIT_SECONDS, require_tool, wait_for  # noqa: E402
_INTERRUPT_POLL_SECONDS = 0.05
_libfuse = ctypes.CDLL(ctypes.util.find_library("fuse3"))  # the library mfusepy loaded, for fuse_interrupted()


@dataclass(frozen=True)
class _Node:
    """One entry of the served tree: its attributes, and its content, link target or entries."""

    attrs: dict[str, int]
    content: bytes = b""
    endless: bool = False
    target: str = ""
    entries: tuple[str, ...] = ()


def _snapshot(source: Path, endless: Collection[str]) -> dict[str, _Node]:
    """Every entry under `source` by its path relative to it ("" for the root), read-only, as it is now; the
    `endless` files made endless."""
    nodes: dict[str, _Node] = {}
    for path in [source, *sorted(source.rglob("*"))]:
        info = path.lstat()
        name = path.relative_to(source).as_posix() if path != source else ""
        attrs = {"st_mode": info.st_mode & ~0o222, "st_nlink": 1, "st_uid": info.st_uid, "st_gid": info.st_gid,
                 "st_mtime": info.st_mtime_ns, "st_atime": info.st_mtime_ns, "st_ctime": info.st_mtime_ns}
        if stat.S_ISDIR(info.st_mode):
            nodes[name] = _Node({**attrs, "st_nlink": 2}, entries=tuple(sorted(p.name for p in path.iterdir())))
        elif stat.S_ISLNK(info.st_mode):
            target = os.readlink(path)
            nodes[name] = _Node({**attrs, "st_size": len(target)}, target=target)
        elif stat.S_ISREG(info.st_mode):
            content = path.read_bytes()
            if name in endless:  # repeated forever
                nodes[name] = _Node({**attrs, "st_size": 0}, content=content or b"\n", endless=True)
            else:
                nodes[name] = _Node({**attrs, "st_size": len(content)}, content=content)
    return nodes


@dataclass
class _ReadCounts:
    started: int = 0
    waiting: int = 0
    interrupted: set[int] = field(default_factory=set)  # reader threads whose held read ended with EINTR


@dataclass
class _Gate:
    """Which files hold their reads, and how many reads of each have started and are held."""

    blocked: set[str]
    counts: dict[str, _ReadCounts] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def pass_read(self, name: str, offset: int) -> None:
        """Count a read of `name` and hold it while the file is blocked."""
        reader = mfusepy.fuse_get_context()[2]  # the reading thread's id
        with self.changed:
            counts = self.counts.setdefault(name, _ReadCounts())
            # A signal that reaches a held reader ends its read with EINTR, and the reader's runtime retries the
            # read (Python does, PEP 475): the same read, not a new one.
            if offset == 0 and reader not in counts.interrupted:
                counts.started += 1
            counts.interrupted.discard(reader)
            counts.waiting += 1
            self.changed.notify_all()
            try:
                while not self.changed.wait_for(lambda: name not in self.blocked, timeout=_INTERRUPT_POLL_SECONDS):
                    if _libfuse.fuse_interrupted():  # a signal, or the reader was killed: end the read
                        counts.interrupted.add(reader)
                        raise mfusepy.FuseOSError(errno.EINTR)
            finally:
                counts.waiting -= 1
                self.changed.notify_all()


class _Operations(mfusepy.Operations):  # type: ignore[misc]  # mfusepy ships no type hints
    """The FUSE callbacks: lookups, listings and link targets from the snapshot; reads through the gate."""

    use_ns = True

    def __init__(self, nodes: dict[str, _Node], gate: _Gate) -> None:
        self.nodes = nodes
        self.gate = gate

    def _node(self, path: str) -> tuple[str, _Node]:
        name = path.strip("/")
        node = self.nodes.get(name)
        if node is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return name, node

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        return self._node(path)[1].attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *self._node(path)[1].entries]

    def readlink(self, path: str) -> str:
        return self._node(path)[1].target

    def open(self, path: str, flags: int) -> int:
        self._node(path)
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise mfusepy.FuseOSError(errno.EROFS)
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        name, node = self._node(path)
        self.gate.pass_read(name, offset)
        if node.endless:
            start = offset % len(node.content)
            return (node.content * (size // len(node.content) + 2))[start:start + size]
        return node.content[offset:offset + size]


class StuckTree:
    """A mounted copy of a tree whose blocked files hold every read until released."""

    def __init__(self, root: Path, gate: _Gate) -> None:
        self.root = root
        self._gate = gate

    def path_flags(self) -> list[str]:
        """The exporter's root flags pointed into the mounted tree (a fixture tree: proc/, sys/, dev/kmsg)."""
        return [f"--path.procfs={self.root / 'proc'}", f"--path.sysfs={self.root / 'sys'}",
                f"--path.kmsg={self.root / 'dev' / 'kmsg'}"]

    def release(self, name: str) -> None:
        """Let every held and future read of `name` (a path relative to the tree) return its content."""
        with self._gate.changed:
            self._gate.blocked.discard(name)
            self._gate.changed.notify_all()

    def release_all(self) -> None:
        with self._gate.changed:
            self._gate.blocked.clear()
            self._gate.changed.notify_all()

    def reads_started(self, name: str) -> int:
        """How many reads of `name` from its start have begun (held or finished)."""
        with self._gate.changed:
            return self._gate.counts.get(name, _ReadCounts()).started

    def reads_waiting(self, name: str) -> int:
        """How many reads of `name` are held now."""
        with self._gate.changed:
            return self._gate.counts.get(name, _ReadCounts()).waiting

    def wait_for_waiting_reads(self, name: str, count: int = 1) -> None:
        """Return once `count` reads of `name` are held (a reader is stuck on it); fail after WAIT_SECONDS."""
        with self._gate.changed:
            held = self._gate.changed.wait_for(
                lambda: self._gate.counts.get(name, _ReadCounts()).waiting >= count, timeout=WAIT_SECONDS)
        assert held, f"{count} read(s) of {name} never held; {self.reads_waiting(name)} are"


def _is_mount(path: Path) -> bool:
    return os.path.ismount(path)


def _serve(nodes: dict[str, _Node], gate: _Gate, mountpoint: Path, failure: list[BaseException]) -> None:
    try:
        mfusepy.FUSE(_Operations(nodes, gate), str(mountpoint), foreground=True, nothreads=False, allow_other=True,
                     ro=True, direct_io=True, max_threads=64, fsname="stuck-files",
                     # A killed reader's read ends (the read handler polls fuse_interrupted()); libfuse also
                     # signals the handler's thread, with a signal whose default action is to be ignored.
                     intr=True, intr_signal=signal.SIGURG)
    except BaseException as err:  # reported by the thread that mounted
        failure.append(err)


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _abort_connection(device: int) -> None:
    """Fail every request of the FUSE connection of `device`, which ends its server loop (fusectl's abort)."""
    connections = Path("/sys/fs/fuse/connections")
    if not (connections / str(os.minor(device))).exists():
        subprocess.run(["mount", "-t", "fusectl", "none", str(connections)], check=False, capture_output=True)
    with contextlib.suppress(OSError):
        (connections / str(os.minor(device)) / "abort").write_text("1")


def _unmount(mountpoint: Path, device: int, server: threading.Thread, fusermount: str) -> None:
    """Unmount, lazily and by aborting the connection when a reader still holds it; the server thread ends."""
    _wait(lambda: subprocess.run([fusermount, "-u", "-q", str(mountpoint)], capture_output=True).returncode == 0
          or not _is_mount(mountpoint), 3)
    if _is_mount(mountpoint):
        subprocess.run([fusermount, "-u", "-z", "-q", str(mountpoint)], capture_output=True)
    server.join(1)
    if server.is_alive():
        _abort_connection(device)
        server.join(WAIT_SECONDS)
    assert not server.is_alive(), f"the FUSE server of {mountpoint} did not stop"
    assert not _is_mount(mountpoint), f"{mountpoint} is still mounted"


@contextlib.contextmanager
def stuck_tree(source: Path, mountpoint: Path, blocked: Collection[str] = (),
               endless: Collection[str] = ()) -> Iterator[StuckTree]:
    """A read-only copy of `source` mounted at `mountpoint` (created) whose `blocked` files hold their reads and
    whose `endless` files never end."""
    fusermount = require_tool("fusermount3")
    nodes = _snapshot(source, endless)
    unknown = [name for name in [*blocked, *endless]
               if name not in nodes or not stat.S_ISREG(nodes[name].attrs["st_mode"])]
    assert not unknown, f"no regular file {unknown} in {source}"
    gate = _Gate(set(blocked))
    mountpoint.mkdir(parents=True, exist_ok=True)
    failure: list[BaseException] = []
    server = threading.Thread(target=_serve, args=(nodes, gate, mountpoint, failure), daemon=True,
                              name=f"fuse {mountpoint}")
    server.start()
    cwd = os.getcwd()
    wait_for(f"the FUSE mount of {mountpoint}", lambda: _is_mount(mountpoint) or not server.is_alive())
    assert _is_mount(mountpoint), f"FUSE mount of {mountpoint} failed: {failure}"
    device = os.lstat(mountpoint).st_dev
    tree = StuckTree(mountpoint, gate)
    try:
        os.listdir(mountpoint)  # answered once the server loop runs, after libfuse changed the directory to /
        os.chdir(cwd)
        yield tree
    finally:
        tree.release_all()
        _unmount(mountpoint, device, server, fusermount)


StuckTreeFactory = Callable[..., StuckTree]


@pytest.fixture
def stuck_trees(tmp_path: Path) -> Iterator[StuckTreeFactory]:
    """Mount stuck trees: `stuck_trees(source, blocked={...}, endless={...})`; all are unmounted at the end of the
    test.

    Request it before `exporter_factory`, so that exporters are stopped before their files go away (in the other
    order, every held read is released before the unmount).
    """
    with contextlib.ExitStack() as stack:
        mounted: list[StuckTree] = []

        def mount(source: Path, blocked: Collection[str] = (), endless: Collection[str] = ()) -> StuckTree:
            tree = stack.enter_context(stuck_tree(source, tmp_path / f"stuck-{len(mounted)}", blocked, endless))
            mounted.append(tree)
            return tree
        yield mount
