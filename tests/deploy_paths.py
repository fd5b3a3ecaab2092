"""What the deployment tests compare against: the exporter's configured roots and which collector reads which,
taken from the exporter's own code.

A root is a `Path` field of `kmem_exporter.config.Config` (procfs, sysfs, debugfs, cgroupfs, kmsg, and any root added
later); its default is where it lies on a host. A collector reads a root when its module (or an
`kmem_exporter.collectors` module it imports) mentions `config.<root>`. A deployment's container passes `--path.*` flags
that put every root its enabled collectors read inside a mount, and the mount must bring in exactly that host path.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import PurePosixPath
from typing import NamedTuple, Sequence

from kmem_exporter.collectors import COLLECTORS
from kmem_exporter.config import Config, ConfigError, parse_args


class Mount(NamedTuple):
    host: PurePosixPath  # where the files are on the host
    container: PurePosixPath  # where the exporter sees them
    read_only: bool


def root_fields(config: Config) -> dict[str, PurePosixPath]:
    return {f.name: PurePosixPath(getattr(config, f.name)) for f in dataclasses.fields(Config)
            if isinstance(getattr(config, f.name), PurePosixPath)}


def host_roots() -> dict[str, PurePosixPath]:
    """Each root by field name, at its default: the host's own path."""
    return root_fields(Config.from_values({}))


def _collector_sources(module_name: str, seen: set[str]) -> list[str]:
    """The source of a collector module and of the kmem_exporter.collectors modules it imports (except base)."""
    if module_name in seen or module_name == "kmem_exporter.collectors.base":
        return []
    seen.add(module_name)
    source = inspect.getsource(importlib.import_module(module_name))
    sources = [source]
    for imported in re.findall(r"^from (kmem_exporter\.collectors\.\w+) import", source, re.M):
        sources += _collector_sources(imported, seen)
    return sources


def roots_read_by(collector: str) -> set[str]:
    """The roots (Config field names) a collector reads."""
    source = "\n".join(_collector_sources(COLLECTORS[collector].__module__, set()))
    return {root for root in host_roots() if re.search(rf"\bconfig\.{root}\b", source)}


def parse_container_args(args: Sequence[str]) -> Config:
    try:
        return parse_args(args)[1]
    except (ConfigError, SystemExit) as err:
        raise AssertionError(f"the exporter refuses the arguments {list(args)}: {err}") from None


def roots_needed(config: Config) -> set[str]:
    return set().union(*(roots_read_by(name) for name in config.enabled_collectors))


def host_path_seen_at(path: PurePosixPath, mounts: Sequence[Mount]) -> PurePosixPath | None:
    """The host path that the container path `path` shows, through the innermost mount holding it."""
    holding = [m for m in mounts if path == m.container or m.container in path.parents]
    if not holding:
        return None
    mount = max(holding, key=lambda m: len(m.container.parts))
    return mount.host / path.relative_to(mount.container)


def mismatches(args: Sequence[str], mounts: Sequence[Mount]) -> list[str]:
    """Everything wrong between a container's exporter arguments (after the command) and its mounts."""
    config = parse_container_args(args)
    roots = root_fields(config)
    expected = host_roots()
    problems = []
    used: set[Mount] = set()
    for name in sorted(roots_needed(config)):
        path = roots[name]
        host = host_path_seen_at(path, mounts)
        if path == expected[name]:
            problems.append(f"{name} is left at {path}: the exporter would read the container's own files")
        elif host is None:
            problems.append(f"{name} at {path} is not inside any mount")
        elif host != expected[name]:
            problems.append(f"{name} at {path} shows the host's {host}, not {expected[name]}")
        used |= {m for m in mounts if path == m.container or m.container in path.parents}
    for mount in mounts:
        if not mount.read_only:
            problems.append(f"{mount.container} is mounted writable")
        if mount not in used:
            problems.append(f"{mount.container} (host {mount.host}) is mounted but no enabled collector reads it")
    return problems


class Privilege(NamedTuple):
    capabilities: frozenset[str]  # CAP_* names the collector needs
    needs: str  # the "needs" cell
    without: str  # the "without it" cell


def privileges_table(readme: str) -> dict[str, Privilege]:
    """The README's Privileges table, by collector."""
    section = readme[readme.index("\n## Privileges"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            table[cells[0].strip("`")] = Privilege(frozenset(re.findall(r"CAP_[A-Z_]+", cells[1])), cells[1], cells[2])
    return table
