"""The walk over a memory cgroup tree: how many memory cgroups are visible, and how many account kernel memory.

Bounded memory: the walk holds one open directory (and its iterator) per level of the tree (depth-first), never a
list of paths, so a 65,535-cgroup tree costs no more than a small one. Directories removed while the walk runs are
normal on a busy node: they are counted as vanished, not reported as errors.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kmem_exporter.collectors.errors import CollectorError
from kmem_exporter.reading.bounded import describe_os_error

KMEM_SLABINFO = "memory.kmem.slabinfo"
# A non-root cgroup v2 directory has a memory cgroup (and an ID) when its parent enables the memory controller for
# it (then it has memory.current), or enables only io, which depends on memory: the kernel then creates the memory
# cgroup all the same but hides its files, and io.stat is there instead.
V2_MEMORY_FILES = ("memory.current", "io.stat")

# What the kernel answers for a cgroup directory or file that was removed meanwhile.
_VANISHED = frozenset({errno.ENOENT, errno.ENODEV, errno.ESTALE, errno.ENOTDIR})
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass
class WalkCounts:
    visible: int = 0  # memory cgroups seen as directories, root included
    kmem_enabled: int = 0  # of those, with kernel-memory accounting on (per-cgroup probing only)
    vanished: int = 0  # directories or files removed while the walk ran


def read_slabinfo_head(parent_fd: int, name: str, path: str) -> bytes:
    """Open memory.kmem.slabinfo of cgroup `name` in the open directory `parent_fd` and read its first byte. The
    only place that file is read; `path` is the same file's full path, for messages.

    On kernels before 4.6 the read fails with EIO when the cgroup does not account kernel memory; the open does not.
    """
    fd = os.open(f"{name}/{KMEM_SLABINFO}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        return os.read(fd, 1)
    finally:
        os.close(fd)


def kmem_accounting_on(parent_fd: int, name: str, path: str) -> Optional[bool]:
    """True when the cgroup accounts kernel memory, False when its slabinfo read fails with EIO, None when the cgroup
    was removed meanwhile. Any other failure is a CollectorError naming the path."""
    try:
        read_slabinfo_head(parent_fd, name, path)
    except OSError as err:
        if err.errno == errno.EIO:
            return False
        if err.errno in _VANISHED:
            return None
        raise CollectorError(describe_os_error(Path(path), err)) from None
    return True


def walk_memory_cgroups(root: Path, member_files: tuple[str, ...] = (), probe_kmem: bool = False) -> WalkCounts:
    """Count the memory cgroups in the tree at `root` (a hierarchy's root directory, counted as one).

    member_files: below the root, only directories containing one of these files are memory cgroups (cgroup v2,
    where a cgroup has the controller only if its parent enables it, so the walk does not descend below one
    without it); empty: every directory is one (cgroup v1).
    probe_kmem: read each non-root cgroup's memory.kmem.slabinfo to tell whether it accounts kernel memory (cgroup
    v1 before 4.6; skipped when the root has no such file, i.e. the kernel has no kmem accounting). The root never
    accounts kernel memory: the kernel refuses a kernel-memory limit on it.

    A directory's link count is 2 plus its number of subdirectories (cgroupfs keeps it so, like most filesystems),
    so a cgroup with a link count of 2 is a leaf and is not listed: on a container host most cgroups are leaves,
    and listing one costs a few dozen directory entries. Every lookup is made relative to the open parent
    directory: on cgroupfs resolving a whole path costs several times more than one name.
    """
    counts = WalkCounts(visible=1)
    probe_kmem = probe_kmem and (root / KMEM_SLABINFO).exists()
    stack: list[tuple[str, int, "os._ScandirIterator[str]"]] = []  # (path, directory fd, its listing)
    try:
        _push(stack, str(root), os.open(root, _DIRECTORY_FLAGS))
    except OSError as err:
        raise CollectorError(describe_os_error(root, err)) from None
    try:
        while stack:
            path, fd, entries = stack[-1]
            descended = False
            try:
                for entry in entries:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    name = entry.name
                    child = f"{path}/{name}"
                    try:
                        links = os.stat(name, dir_fd=fd, follow_symlinks=False).st_nlink
                        member = not member_files or _holds_any(fd, name, member_files)
                    except OSError as err:
                        if err.errno not in _VANISHED:
                            raise CollectorError(describe_os_error(Path(child), err)) from None
                        member = False
                    if not member:
                        if not _exists(fd, name):
                            counts.vanished += 1
                        continue  # no memory controller here, nor below
                    counts.visible += 1
                    if probe_kmem:
                        accounting = kmem_accounting_on(fd, name, f"{child}/{KMEM_SLABINFO}")
                        if accounting is None:
                            counts.vanished += 1
                            continue
                        counts.kmem_enabled += accounting
                    if links == 2:
                        continue  # a leaf: nothing to list
                    try:
                        _push(stack, child, os.open(name, _DIRECTORY_FLAGS, dir_fd=fd))
                    except OSError as err:
                        if err.errno not in _VANISHED:
                            raise CollectorError(describe_os_error(Path(child), err)) from None
                        counts.vanished += 1
                        continue
                    descended = True
                    break
            except OSError as err:  # the directory being listed was removed
                if err.errno not in _VANISHED:
                    raise CollectorError(describe_os_error(Path(path), err)) from None
                counts.vanished += 1
            if not descended:
                _pop(stack)
    finally:
        while stack:
            _pop(stack)
    return counts


def _push(stack: list[tuple[str, int, "os._ScandirIterator[str]"]], path: str, fd: int) -> None:
    try:
        stack.append((path, fd, os.scandir(fd)))
    except OSError:
        os.close(fd)
        raise


def _pop(stack: list[tuple[str, int, "os._ScandirIterator[str]"]]) -> None:
    _, fd, entries = stack.pop()
    entries.close()
    os.close(fd)


def _holds_any(parent_fd: int, name: str, files: tuple[str, ...]) -> bool:
    """Whether directory `name` holds one of `files`. OSError other than "not there" propagates."""
    for file in files:
        try:
            os.stat(f"{name}/{file}", dir_fd=parent_fd)
        except OSError as err:
            if err.errno not in _VANISHED:
                raise
            continue
        return True
    return False


def _exists(parent_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except OSError:
        return False
    return True
