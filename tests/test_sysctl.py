"""The vm sysctl parser and collector: present files exported, absent ones skipped, bad ones failing alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import copy_proc, log_messages, run_exporter, scrape_fixture_ok
from fuzzing import parse_or_none
from metrics_text import collector_success, series_values, only_collectors
from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.sysctl import parse_sysctl_int

ONLY_SYSCTL = only_collectors("sysctl")


def sysctls(exposition: str) -> dict[str, float]:
    return {dict(labels)["sysctl"]: v for (name, labels), v in series_values(exposition).items()
            if name == "kmem_vm_sysctl"}


def test_parse_sysctl_int() -> None:
    assert parse_sysctl_int("67584\n") == 67584
    assert parse_sysctl_int(" -1 \n") == -1
    for bad in ("", "\n", "10 20\n", "abc\n"):
        with pytest.raises(ParseError, match="expected a single integer"):
            parse_sysctl_int(bad)


@given(st.text())
def test_random_text_raises_only_parse_error(text: str) -> None:
    parse_or_none(parse_sysctl_int, text)


def test_rhel7_has_only_the_3_10_sysctls() -> None:
    out = scrape_fixture_ok("rhel7-fragmented", *ONLY_SYSCTL)
    assert sysctls(out) == {"extfrag_threshold": 500, "min_free_kbytes": 67584, "vfs_cache_pressure": 100,
                                      "zone_reclaim_mode": 0}


def test_6_18_has_all_seven() -> None:
    out = scrape_fixture_ok("live-6.18", *ONLY_SYSCTL)
    assert sysctls(out) == {
        "compaction_proactiveness": 20, "extfrag_threshold": 500, "min_free_kbytes": 67584,
        "vfs_cache_pressure": 100, "watermark_boost_factor": 15000, "watermark_scale_factor": 10,
        "zone_reclaim_mode": 0,
    }


def test_malformed_sysctl_fails_the_collector_naming_the_file(tmp_path: Path) -> None:
    proc = copy_proc("live-6.18", tmp_path)
    (proc / "sys" / "vm" / "min_free_kbytes").write_text("lots\n")
    result = run_exporter("scrape", f"--path.procfs={proc}", *only_collectors("sysctl", "vmstat"))
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"sysctl": 0, "vmstat": 1}
    assert f"{proc / 'sys' / 'vm' / 'min_free_kbytes'}: malformed: expected a single integer, got 'lots\\n'" \
        in log_messages(result.stderr)


def test_missing_vm_directory_fails(tmp_path: Path) -> None:
    proc = copy_proc("live-6.18", tmp_path)
    shutil.rmtree(proc / "sys" / "vm")
    result = run_exporter("scrape", f"--path.procfs={proc}", *ONLY_SYSCTL)
    assert result.returncode == 1
    assert f"{proc / 'sys' / 'vm'}: directory not found" in result.stderr
