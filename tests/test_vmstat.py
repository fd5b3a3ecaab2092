"""The vmstat parser on real files and random input, and the vmstat collector through the real exporter."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import FIXTURES, copy_proc, run_exporter, scrape_fixture, scrape_fixture_ok
from fuzzing import parse_or_none
from metrics_text import collector_success, names, only_collectors, types, value
from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers import vmstat as vmstat_source
from kmem_exporter.parsers.vmstat import is_gauge, parse_vmstat

ONLY_VMSTAT = only_collectors("vmstat")


def read(host: str) -> str:
    return (FIXTURES / host / "proc" / "vmstat").read_text()


def test_parses_rhel7_3_10_fields() -> None:
    fields = parse_vmstat(read("rhel7-fragmented"))
    assert len(fields) == 114
    assert list(fields)[:2] == ["nr_free_pages", "nr_alloc_batch"]
    assert fields["nr_free_pages"] == 101637
    assert fields["allocstall"] == 52817
    assert (fields["compact_stall"], fields["compact_fail"], fields["compact_success"]) == (184312, 176904, 7408)
    assert fields["pgscan_kswapd_normal"] == 179317262
    assert fields["numa_hit"] == 41903377126
    assert "oom_kill" not in fields and "allocstall_normal" not in fields


def test_parses_live_6_18_fields() -> None:
    fields = parse_vmstat(read("live-6.18"))
    assert len(fields) == 192
    assert fields["nr_free_pages"] == 1025782
    assert (fields["drop_pagecache"], fields["drop_slab"]) == (1, 2)
    assert fields["allocstall_normal"] == 0 and "allocstall" not in fields


def test_rejects_truncated_line() -> None:
    with pytest.raises(ParseError, match=r"line 2: expected 'NAME VALUE', got 'compact_st'"):
        parse_vmstat("compact_stall 3\ncompact_st")


def test_rejects_empty_and_duplicate() -> None:
    with pytest.raises(ParseError, match="empty"):
        parse_vmstat("\n")
    with pytest.raises(ParseError, match="'oom_kill' appears twice"):
        parse_vmstat("oom_kill 1\noom_kill 2\n")


def test_gauge_fields() -> None:
    assert is_gauge("nr_free_pages") and not is_gauge("compact_stall") and not is_gauge("numa_hit")


@given(st.text())
def test_random_text_raises_only_parse_error(text: str) -> None:
    parse_or_none(parse_vmstat, text)


LINE_TEXT = st.text(alphabet=st.sampled_from("az_09 \t\n-\u2028\u00851"), max_size=60)


@given(st.lists(st.one_of(LINE_TEXT, st.tuples(st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
                                                st.integers(min_value=0, max_value=2**65)).map("{0[0]} {0[1]}".format)),
                max_size=8).map("\n".join))
def test_the_column_reading_agrees_with_the_line_reading(text: str) -> None:
    """The fast path (whole columns at once) gives what the line-by-line reading gives, or leaves the text to it."""
    assert parse_or_none(parse_vmstat, text) == parse_or_none(vmstat_source._parse_lines, text)


@given(st.integers(min_value=0, max_value=len(read("live-6.18"))))
def test_truncated_file_raises_only_parse_error(cut: int) -> None:
    fields = parse_or_none(parse_vmstat, read("live-6.18")[:cut])
    assert fields is None or all(isinstance(v, int) for v in fields.values())


RHEL7_DEFAULT = {f"kmem_vmstat_{field}_total" for field in (
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated", "compact_stall", "compact_fail",
    "compact_success", "allocstall", "kswapd_inodesteal", "kswapd_low_wmark_hit_quickly",
    "kswapd_high_wmark_hit_quickly", "pgscan_direct_throttle", "drop_pagecache", "drop_slab", "thp_fault_fallback",
    *(f"{kind}_{who}_{zone}" for kind in ("pgscan", "pgsteal") for who in ("kswapd", "direct")
      for zone in ("dma", "dma32", "normal", "movable")),
)}


def test_default_fields_on_rhel7() -> None:
    out = scrape_fixture_ok("rhel7-fragmented", *ONLY_VMSTAT)
    exposed = {n for n in names(out) if n.startswith("kmem_vmstat_")}
    assert exposed == RHEL7_DEFAULT
    assert value(out, "kmem_vmstat_compact_stall_total") == 184312
    assert value(out, "kmem_vmstat_allocstall_total") == 52817
    assert types(out)["kmem_vmstat_compact_fail_total"] == "counter"


def test_default_fields_on_6_18() -> None:
    out = scrape_fixture_ok("live-6.18", *ONLY_VMSTAT)
    exposed = names(out)
    for field in ("allocstall_dma32", "allocstall_normal", "allocstall_movable", "oom_kill", "compact_daemon_wake",
                  "thp_file_fallback", "drop_slab"):
        assert f"kmem_vmstat_{field}_total" in exposed
    for field in ("allocstall", "thp_fault_fallback_charge", "pgmigrate_success", "nr_free_pages"):
        assert f"kmem_vmstat_{field}_total" not in exposed
    assert value(out, "kmem_vmstat_drop_slab_total") == 2


def test_fields_option_replaces_default_and_makes_nr_fields_gauges() -> None:
    out = scrape_fixture_ok("rhel7-fragmented", *ONLY_VMSTAT, "--collector.vmstat.fields=nr_free_pages|compact_stall")
    assert {n for n in names(out) if n.startswith("kmem_vmstat_")} == {
        "kmem_vmstat_nr_free_pages", "kmem_vmstat_compact_stall_total"}
    assert types(out)["kmem_vmstat_nr_free_pages"] == "gauge"
    assert value(out, "kmem_vmstat_nr_free_pages") == 101637


def test_fields_option_matches_whole_names(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text('collector.vmstat.fields: "compact"\n')
    out = scrape_fixture_ok("rhel7-fragmented", *ONLY_VMSTAT, f"--config.file={config}")
    assert not {n for n in names(out) if n.startswith("kmem_vmstat_")}
    assert collector_success(out)["vmstat"] == 1


def test_truncated_vmstat_fails_vmstat_only() -> None:
    result = scrape_fixture("broken-vmstat-truncated", *only_collectors("buddyinfo", "vmstat", "sysctl", "kernel"))
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"buddyinfo": 1, "vmstat": 0, "sysctl": 1, "kernel": 1}
    path = FIXTURES / "broken-vmstat-truncated" / "proc" / "vmstat"
    assert f"collector=vmstat failed: {path}: malformed: line 96: expected 'NAME VALUE', got 'compact_st'" \
        in result.stderr


def test_missing_vmstat_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    result = run_exporter("scrape", f"--path.procfs={tmp_path / 'proc'}", *ONLY_VMSTAT)
    assert result.returncode == 1
    assert f"{tmp_path / 'proc' / 'vmstat'}: file not found" in result.stderr


def test_unreadable_vmstat_names_the_reason(tmp_path: Path) -> None:
    proc = copy_proc("rhel7-fragmented", tmp_path)
    (proc / "vmstat").unlink()
    (proc / "vmstat").mkdir()  # reading a directory fails with EISDIR even as root
    result = run_exporter("scrape", f"--path.procfs={proc}", *ONLY_VMSTAT)
    assert result.returncode == 1
    assert f"{proc / 'vmstat'}: EISDIR: Is a directory" in result.stderr
