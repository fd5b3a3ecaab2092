"""Parser for records of the kernel log device /dev/kmsg (Documentation/ABI/testing/dev-kmsg).

One read() of /dev/kmsg returns one record:

    6,1234,5678901,-;exe: page allocation failure: order:6, mode:0x10c0d0
     SUBSYSTEM=net
     DEVICE=+net:eth0

The header is `prio,seq,usec,flags[,more fields];` and the message text follows it up to the newline. `prio` holds
the syslog facility (prio >> 3; 0 is the kernel, user space writing to /dev/kmsg gets 1 or higher) and level
(prio & 7). `flags` is `-`, or `c`/`+` for the first/continuing fragment of a line (3.x kernels). Lines that start
with a space carry the record's dictionary (KEY=value); they are not message text. Bytes below 0x20, 0x7f and up,
and the backslash are escaped as `\\xNN`, so the text never holds a raw newline. The kernel cuts a record that does
not fit its buffer, so the last line may lack its newline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from kmem_exporter.parsers import ParseError, parse_unsigned

KERNEL_FACILITY = 0

_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")


@dataclass(frozen=True)
class KmsgRecord:
    facility: int
    level: int
    seq: int
    usec: int
    flags: str
    text: str
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def from_kernel(self) -> bool:
        """True for messages the kernel printed itself; False for lines user space wrote into /dev/kmsg."""
        return self.facility == KERNEL_FACILITY


def unescape(data: bytes) -> str:
    r"""Text with the kernel's `\xNN` escapes turned back into bytes, decoded as UTF-8 (bad bytes replaced)."""
    return _ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), data).decode("utf-8", errors="replace")


def parse_record(data: bytes) -> KmsgRecord:
    """One record as returned by a read() of /dev/kmsg."""
    first, _, rest = data.partition(b"\n")
    header, sep, text = first.partition(b";")
    if not sep:
        raise ParseError(f"no ';' after the record header: {data[:80]!r}")
    parts = header.split(b",")
    if len(parts) < 4:
        raise ParseError(f"expected 'prio,seq,usec,flags;' header, got {header[:80]!r}")
    prio, seq, usec = (_header_number(part, name, header) for part, name in zip(parts, ("prio", "seq", "usec")))
    fields = {}
    for line in rest.split(b"\n"):
        if line.startswith(b" "):
            key, _, value = line[1:].partition(b"=")
            fields[unescape(key)] = unescape(value)
        elif line:
            raise ParseError(f"line after the header does not start with a space: {line[:80]!r}")
    return KmsgRecord(
        facility=prio >> 3,
        level=prio & 7,
        seq=seq,
        usec=usec,
        flags=parts[3].decode("ascii", errors="replace"),
        text=unescape(text),
        fields=fields,
    )


def _header_number(part: bytes, name: str, header: bytes) -> int:
    """prio (`%u`), seq and usec (`%llu`): ASCII digits, at most 64 bits."""
    token = part.decode("ascii", errors="replace")
    if token.startswith("-") and token[1:].isdigit():
        raise ParseError(f"negative {name} in header {header[:80]!r}")
    if not (token.isdigit() and token.isascii()):
        raise ParseError(f"non-numeric {name} in header {header[:80]!r}")
    return parse_unsigned(token, f"{name} in header {header[:80]!r}")


def split_records(data: bytes) -> list[bytes]:
    """Records in a stream of several (a file or pipe in the record format): a record is a header line and the
    continuation lines (starting with a space) after it. Continuation lines before any header are dropped."""
    records: list[bytes] = []
    current: list[bytes] = []
    for line in data.split(b"\n"):
        if line.startswith(b" "):
            if current:
                current.append(line)
        elif line:
            if current:
                records.append(b"\n".join(current))
            current = [line]
    if current:
        records.append(b"\n".join(current))
    return records
