"""Parsers for what tells which network namespaces exist: namespace links and mount tables.

A process's namespace link, `/proc/<pid>/ns/net`, points to `net:[4026531992]`: the namespace's inode number, which
identifies it. A namespace can also be kept alive by a bind mount of such a link (`ip netns add` mounts one on
`/run/netns/<name>`); the mount table of a mount namespace, `/proc/<pid>/mountinfo`, shows it with the namespace as
the mount's root:

    44 43 0:4 net:[4026532177] /run/netns/blue rw shared:2 - nsfs nsfs rw

(fields: mount id, parent id, major:minor, root, mount point, options, optional fields, `-`, filesystem type,
source, super options). Kernels before 3.19 had no nsfs and show the same root with filesystem type `proc`.
"""

from __future__ import annotations

import re

from kmem_exporter.parsers import ParseError, parse_unsigned, split_lines

_LINK = re.compile(r"(?P<kind>[a-z_]+):\[(?P<inode>\d+)\]", re.ASCII)


def parse_namespace_link(target: str, kind: str) -> int:
    """The inode number in a namespace link target such as `net:[4026531992]`; `kind` is the expected type."""
    match = _LINK.fullmatch(target)
    if match is None or match.group("kind") != kind:
        raise ParseError(f"expected a link to '{kind}:[INODE]', got {target[:80]!r}")
    return parse_unsigned(match.group("inode"), "the namespace's inode number")


def mounted_network_namespaces(mountinfo: str) -> set[int]:
    """Inode numbers of the network namespaces bind-mounted somewhere in this mount table."""
    found = set()
    for number, line in enumerate(split_lines(mountinfo), 1):
        if not line.strip():
            continue
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:-2]:
            raise ParseError(f"line {number}: expected 'ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - TYPE SOURCE "
                             f"OPTIONS', got {line[:120]!r}")
        match = _LINK.fullmatch(fields[3])
        if match is not None and match.group("kind") == "net":
            found.add(parse_unsigned(match.group("inode"), f"line {number}: the namespace's inode number"))
    return found
