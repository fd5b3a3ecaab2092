"""Parsers for the cgroup files the memory-cgroup collector reads.

/proc/cgroups, one row per controller the kernel was built with (tab-separated, behind a `#` header):

    #subsys_name	hierarchy	num_cgroups	enabled
    cpuset	3	1	1
    memory	4	20	1

`hierarchy` is the id of the cgroup v1 hierarchy the controller is mounted on, 0 when it is on cgroup v2 (or not
mounted). `num_cgroups` counts the cgroups of that hierarchy that the kernel still holds, including removed ones
that are not freed yet; on cgroup v2 it counts every cgroup of the unified hierarchy.

cgroup.stat (cgroup v2, 4.14+), `key value` lines:

    nr_descendants 0
    nr_dying_descendants 0
    nr_subsys_memory 55          (newer kernels, 6.12 has them: live controller instances at and below this cgroup)
    nr_dying_subsys_memory 35    (the same kernels: dying ones)

cgroup.controllers (cgroup v2): the controllers available in a cgroup, space-separated on one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from kmem_exporter.parsers import ParseError, parse_unsigned, split_lines


@dataclass(frozen=True)
class Controller:
    name: str
    hierarchy: int  # v1 hierarchy id; 0: on cgroup v2 or not mounted
    num_cgroups: int
    enabled: bool


def parse_proc_cgroups(text: str) -> dict[str, Controller]:
    """The rows of /proc/cgroups by controller name."""
    controllers: dict[str, Controller] = {}
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4 or not all(_is_number(f) for f in fields[1:]) or fields[3] not in ("0", "1"):
            raise ParseError(f"line {number}: expected 'NAME HIERARCHY NUM_CGROUPS ENABLED', got {line[:80]!r}")
        name, hierarchy, num_cgroups, enabled = fields
        controllers[name] = Controller(name, parse_unsigned(hierarchy, f"line {number}: hierarchy"),
                                       parse_unsigned(num_cgroups, f"line {number}: num_cgroups"), enabled == "1")
    if not controllers:
        raise ParseError("no controllers listed (empty or truncated file)")
    return controllers


@dataclass(frozen=True)
class CgroupStat:
    nr_descendants: int
    nr_dying_descendants: int
    subsys: Mapping[str, int] = field(default_factory=dict)  # nr_subsys_<controller>
    dying_subsys: Mapping[str, int] = field(default_factory=dict)  # nr_dying_subsys_<controller>

    def dying(self, controller: str) -> int:
        """Dying instances of `controller` below this cgroup; older kernels (6.1) don't count them per controller,
        and then every dying descendant cgroup is taken (an upper bound)."""
        return self.dying_subsys.get(controller, self.nr_dying_descendants)


def parse_cgroup_stat(text: str) -> CgroupStat:
    values: dict[str, int] = {}
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not _is_number(fields[1]):
            raise ParseError(f"line {number}: expected 'KEY VALUE', got {line[:80]!r}")
        values[fields[0]] = parse_unsigned(fields[1], f"line {number}: {fields[0][:40]}")
    missing = [key for key in ("nr_descendants", "nr_dying_descendants") if key not in values]
    if missing:
        raise ParseError(f"no {missing[0]} line (truncated file?)")
    return CgroupStat(
        nr_descendants=values["nr_descendants"],
        nr_dying_descendants=values["nr_dying_descendants"],
        subsys=_prefixed(values, "nr_subsys_"),
        dying_subsys=_prefixed(values, "nr_dying_subsys_"),
    )


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _prefixed(values: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {key[len(prefix):]: value for key, value in values.items() if key.startswith(prefix) and key != prefix}


def parse_controllers(text: str) -> frozenset[str]:
    """The controller names in a cgroup v2 `cgroup.controllers` file (empty when none is available)."""
    lines = [line for line in split_lines(text) if line.strip()]
    if len(lines) > 1:
        raise ParseError(f"expected one line of controller names, got {len(lines)} lines")
    names = frozenset(lines[0].split()) if lines else frozenset()
    bad: Optional[str] = next((n for n in sorted(names) if not (n.isascii() and n.replace("_", "").isalnum())), None)
    if bad is not None:
        raise ParseError(f"not a controller name: {bad[:40]!r}")
    return names
