"""Synthetic cgroup v1 memory hierarchies for the benchmarks: kubelet's layout (kubepods/<qos>/pod<uid>/<container
id>) with any number of cgroups, written into a host root whose /proc/cgroups is made to agree."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))

from construct_memcg import V1_CHILD  # noqa: E402

MEMORY_CGROUP_ID_LIMIT = 65535

# The control files of a non-root cgroup v1 memory cgroup (3.10 and 6.x list the same names), as in the fixtures.
V1_FILES_REAL: tuple[str, ...] = tuple(V1_CHILD)
V1_FILES_MINIMAL = ("cgroup.procs", "memory.kmem.slabinfo", "memory.usage_in_bytes")


def cgroup_dirs(total: int, containers_per_pod: int = 2) -> Iterator[str]:
    """Relative paths of `total - 1` cgroup directories below the root, parents before children."""
    fixed = ["kubepods", "kubepods/burstable", "kubepods/besteffort", "system.slice"]
    emitted = 0
    for path in fixed[: total - 1]:
        emitted += 1
        yield path
    pod = 0
    while emitted < total - 1:
        qos = ("burstable", "besteffort")[pod % 2]
        pod_dir = f"kubepods/{qos}/pod{pod:08x}-0000-4000-8000-{pod:012x}"
        yield pod_dir
        emitted += 1
        for container in range(min(containers_per_pod, total - 1 - emitted)):
            yield f"{pod_dir}/{pod:032x}{container:032x}"
            emitted += 1
        pod += 1


def generate_v1_tree(root: Path, total: int = MEMORY_CGROUP_ID_LIMIT, files: tuple[str, ...] = V1_FILES_MINIMAL
                     ) -> int:
    """Write a cgroup v1 memory hierarchy of `total` cgroups (root included) under `root`; returns `total`."""
    root.mkdir(parents=True, exist_ok=True)
    for name in (*files, "cgroup.sane_behavior", "release_agent"):
        (root / name).touch()
    for relative in cgroup_dirs(total):
        directory = root / relative
        directory.mkdir()
        for name in files:
            os.close(os.open(directory / name, os.O_CREAT | os.O_WRONLY, 0o644))
    return total


def replace_memory_cgroups(host_root: Path, total: int, files: tuple[str, ...] = V1_FILES_MINIMAL) -> None:
    """Replace the cgroup v1 memory tree of a host root (a copy of a fixture tree) by a generated one of `total`
    cgroups, and set the memory row of its proc/cgroups to the same count."""
    memory = host_root / "sys" / "fs" / "cgroup" / "memory"
    shutil.rmtree(memory, ignore_errors=True)
    generate_v1_tree(memory, total, files)
    proc_cgroups = host_root / "proc" / "cgroups"
    text, replaced = re.subn(r"^(memory\t\d+\t)\d+(\t)", rf"\g<1>{total}\g<2>", proc_cgroups.read_text(), flags=re.M)
    if replaced != 1:
        raise SystemExit(f"{proc_cgroups}: no memory row to rewrite")
    proc_cgroups.write_text(text)
