"""Live network namespaces: held by processes or kept by bind mounts. Walks /proc, so it runs in the background."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from kmem_exporter.collectors.background import BackgroundCollector
from kmem_exporter.collectors.errors import CollectorError, parse_text
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.reading.bounded import describe_os_error
from kmem_exporter.collectors.base import interval_option
from kmem_exporter.reading.bounded import read_bounded
from kmem_exporter.parsers.netns import mounted_network_namespaces, parse_namespace_link

# A process that exits during the walk: its directory is gone (ENOENT), or it is a zombie whose namespaces are
# released (ENOENT on the link), or its task is being torn down (ESRCH).
_VANISHED = (errno.ENOENT, errno.ESRCH)


class _Vanished(Exception):
    """The process went away while it was being read."""


class _Unreadable(Exception):
    """The process's namespaces may not be read (permission denied)."""


@dataclass(frozen=True)
class NetnsWalk:
    namespaces: int  # distinct network namespaces found
    processes: int  # processes whose network namespace was read
    unreadable: int  # processes whose namespaces could not be read (permission denied)


_PERMISSION_HINT = ("reading every process's namespaces needs root or CAP_SYS_PTRACE; a container sees the host's "
                    "processes through the host's /proc mounted in (--path.procfs=/host/proc), not its own /proc")


def _read(path: Path, read: Callable[[Path], str]) -> str:
    try:
        return read(path)
    except PermissionError:
        raise _Unreadable() from None
    except OSError as err:
        if err.errno in _VANISHED:
            raise _Vanished() from None
        raise CollectorError(describe_os_error(path, err)) from None


def _namespace(path: Path, kind: str) -> int:
    return parse_text(path, _read(path, os.readlink), lambda target: parse_namespace_link(target, kind))


def _mounted(path: Path, max_bytes: int) -> set[int]:
    text = _read(path, lambda p: read_bounded(p, max_bytes))
    return parse_text(path, text, mounted_network_namespaces)


def walk_network_namespaces(procfs: Path, max_bytes: int) -> NetnsWalk:
    """Distinct network namespaces of all processes plus those bind-mounted in any of their mount namespaces.

    Processes are visited in PID order; each mount namespace's mount table is read once, from its lowest PID.
    Processes that exit during the walk are skipped; those whose namespaces may not be read are skipped and counted.
    """
    try:
        pids = sorted((entry.name for entry in os.scandir(procfs) if entry.name.isdigit()), key=int)
    except OSError as err:
        raise CollectorError(describe_os_error(procfs, err)) from None
    namespaces: set[int] = set()
    mount_namespaces: set[int] = set()
    processes = unreadable = 0
    for pid in pids:
        ns = procfs / pid / "ns"
        try:
            namespaces.add(_namespace(ns / "net", "net"))
        except _Vanished:
            continue
        except _Unreadable:
            unreadable += 1
            continue
        processes += 1
        try:
            mount_namespace = _namespace(ns / "mnt", "mnt")
            if mount_namespace not in mount_namespaces:
                namespaces |= _mounted(procfs / pid / "mountinfo", max_bytes)
                mount_namespaces.add(mount_namespace)
        except (_Vanished, _Unreadable):
            continue
    if processes == 0:
        if unreadable:
            raise CollectorError(f"{procfs}/<pid>/ns/net: permission denied ({_PERMISSION_HINT})")
        raise CollectorError(f"{procfs}: no process with an ns/net link (is path.procfs a procfs?)")
    return NetnsWalk(len(namespaces), processes, unreadable)


class NetnsCollector(BackgroundCollector[NetnsWalk]):
    name = "netns"
    description = "live network namespaces, from /proc/<pid>/ns/net and bind mounts (background walk of /proc)"
    options = (interval_option("netns", "30s", "walk over /proc/<pid>"),)

    def refresh(self, files: KernelFiles) -> NetnsWalk:
        return walk_network_namespaces(self.config.procfs, files.max_bytes)

    def metrics(self, result: NetnsWalk) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "kmem_network_namespaces",
            "Live network namespaces: those of running processes plus those kept by bind mounts (ip netns). On "
            "3.10 kernels, kmem_nf_conntrack_slab_caches far above this means conntrack caches leaked.",
            value=result.namespaces)
        yield GaugeMetricFamily(
            "kmem_network_namespaces_unreadable_processes",
            "Processes whose namespaces the exporter was not allowed to read; when above 0, kmem_network_namespaces "
            f"may be too low ({_PERMISSION_HINT}).",
            value=result.unreadable)
