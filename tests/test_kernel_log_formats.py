"""The format table beside the patterns (exporter/kmem_exporter/parsers/kernel_log_formats.md) against the patterns:
every format filled in is counted as its event, or not counted when the table says so, and every event is listed for
every kernel version that prints it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kmem_exporter.parsers.kernel_log_patterns import EVENTS, KernelEvent, match_event

TABLE = Path(__file__).parent.parent / "exporter" / "kmem_exporter" / "parsers" / "kernel_log_formats.md"
VERSIONS = ("2.6.32", "3.10", "4.4", "4.9", "4.14", "4.19", "5.4", "5.10", "5.15", "6.1", "6.6", "6.12", "6.19")

# Sample values for the conversions the formats use, most specific first.
FILL = (("%*pbl", "0-1"), ("%pGg", "GFP_KERNEL|__GFP_COMP"), ("%#x", "0x40dc0"), ("0x%x", "0x20"),
        ("%lu", "1234"), ("%ld", "1234"), ("%hd", "-998"), ("%d", "4"), ("%u", "4"), ("%s", "kworker/u16:3"))


def rows(section: str) -> list[list[str]]:
    """The cells of the table under the `## <section>` heading, header and rule left out."""
    text = TABLE.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in text.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def versions(cell: str) -> list[str]:
    return [v.strip() for v in cell.split(",")]


def fill(fmt: str) -> str:
    text = fmt.strip("`")
    for conversion, sample in FILL:
        text = text.replace(conversion, sample)
    assert "%" not in text, text
    return text


COUNTED = rows("Counted")
NOT_COUNTED = rows("Found but not counted")


@pytest.mark.parametrize("event,versions_cell,where,fmt", COUNTED)
def test_counted_format(event: str, versions_cell: str, where: str, fmt: str) -> None:
    event = event.strip("`")
    assert set(versions(versions_cell)) <= set(VERSIONS)
    found = match_event(fill(fmt))
    assert found is not None and found.event == event, (fmt, found)
    assert found == KernelEvent(event, "4" if found.order is not None else None)


@pytest.mark.parametrize("versions_cell,where,fmt,why", NOT_COUNTED)
def test_format_not_counted(versions_cell: str, where: str, fmt: str, why: str) -> None:
    assert set(versions(versions_cell)) <= set(VERSIONS)
    assert why
    assert match_event(fill(fmt)) is None, fmt


def test_every_event_in_every_version_that_prints_it() -> None:
    listed: dict[str, set[str]] = {event: set() for event in EVENTS}
    for event, versions_cell, _, _ in COUNTED:
        listed[event.strip("`")].update(versions(versions_cell))
    everywhere = set(VERSIONS)
    assert listed == {
        "page_allocation_failure": everywhere,
        "page_allocation_stall": {"4.9", "4.14"},  # added in 4.9, removed in 4.15
        "slub_allocation_failure": everywhere,
        "slab_cache_create_failure": everywhere - {"2.6.32"},  # 2.6.32 prints only a panic
        "nf_conntrack_cache_failure": {"2.6.32", "3.10", "4.4"},  # per-namespace caches, gone by 4.9
        "nf_conntrack_table_full": everywhere,
        "netdev_unregister_wait": everywhere,
        "oom_kill": everywhere,
    }
