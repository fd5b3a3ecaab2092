"""Kernel release and boot command line: the shared parsers and the kernel collector."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import FIXTURES, copy_proc, run_exporter, scrape_fixture_ok, scrape_ok
from fuzzing import parse_or_none
from metrics_text import collector_success, only_collectors, value
from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.kernel import (cgroup_memory_options, cmdline_values, kmem_disabled_at_boot, parse_cmdline,
                                     parse_release, parse_release_string)

ONLY_KERNEL = only_collectors("kernel")


def test_parse_release() -> None:
    assert parse_release("3.10.0-514.el7.x86_64\n") == (3, 10)
    assert parse_release("6.18.44-fc-v657\n") == (6, 18)
    assert parse_release("4.9") == (4, 9)
    assert parse_release_string(" 3.10.0-1160.el7.x86_64\n") == "3.10.0-1160.el7.x86_64"
    for bad in ("", "linux\n", "3\n", "3.10 extra\n"):
        with pytest.raises(ParseError, match="expected a kernel release"):
            parse_release(bad)


def test_rhel7_cmdline() -> None:
    text = (FIXTURES / "rhel7-fragmented" / "proc" / "cmdline").read_text()
    words = parse_cmdline(text)
    assert words[0] == "BOOT_IMAGE=/vmlinuz-3.10.0-514.el7.x86_64" and words[-1] == "LANG=en_US.UTF-8"
    assert len(words) == 8
    assert not kmem_disabled_at_boot(text)


@pytest.mark.parametrize("cmdline, nokmem", [
    ("ro quiet cgroup.memory=nokmem\n", True),
    ("ro cgroup.memory=nosocket,nokmem quiet\n", True),
    ("cgroup.memory=nokmem,nosocket", True),
    ("cgroup.memory=nosocket ro cgroup.memory=nokmem", True),  # every occurrence counts, as in the kernel
    ('"cgroup.memory=nokmem"', True),
    ("ro cgroup.memory=nosocket\n", False),
    ("ro nokmem cgroup_memory=nokmem\n", False),
    ("ro -- cgroup.memory=nokmem\n", False),  # after `--` the words belong to init
    ('root=/dev/sda1 acpi="a b cgroup.memory=nokmem"\n', False),  # inside another parameter's quoted value
    ("", False),
])
def test_nokmem(cmdline: str, nokmem: bool) -> None:
    assert kmem_disabled_at_boot(cmdline) is nokmem


def test_cmdline_values_and_options() -> None:
    text = 'BOOT_IMAGE=/vmlinuz x="a b" cgroup.memory=nosocket cgroup.memory=nokmem,nosocket -- cgroup.memory=x'
    assert cmdline_values(text, "x") == ["a b"]
    assert cmdline_values(text, "cgroup.memory") == ["nosocket", "nokmem,nosocket"]
    assert cgroup_memory_options(text) == {"nosocket", "nokmem"}


@given(st.text())
def test_cmdline_parsing_never_raises(text: str) -> None:
    kmem_disabled_at_boot(text)


@given(st.text())
def test_release_raises_only_parse_error(text: str) -> None:
    release = parse_or_none(parse_release, text)
    assert release is None or min(release) >= 0


@pytest.mark.parametrize("host, release", [("rhel7-fragmented", "3.10.0-514.el7.x86_64"),
                                           ("rhel7-healthy", "3.10.0-514.el7.x86_64"),
                                           ("live-6.18", "6.18.44-fc-v657")])
def test_kernel_collector_on_fixtures(host: str, release: str) -> None:
    out = scrape_fixture_ok(host, *ONLY_KERNEL)
    assert value(out, "kmem_kernel_info", release=release) == 1
    assert value(out, "kmem_kernel_boot_nokmem") == 0


def test_kernel_collector_sees_nokmem(tmp_path: Path) -> None:
    proc = copy_proc("rhel7-fragmented", tmp_path)
    cmdline = proc / "cmdline"
    cmdline.write_text(cmdline.read_text().strip() + " cgroup.memory=nosocket,nokmem\n")
    out = scrape_ok(f"--path.procfs={proc}", *ONLY_KERNEL)
    assert value(out, "kmem_kernel_boot_nokmem") == 1


def test_kernel_collector_fails_on_bad_release(tmp_path: Path) -> None:
    proc = copy_proc("rhel7-fragmented", tmp_path)
    (proc / "sys" / "kernel" / "osrelease").write_text("")
    result = run_exporter("scrape", f"--path.procfs={proc}", *only_collectors("kernel", "buddyinfo"))
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"kernel": 0, "buddyinfo": 1}
    assert f"{proc / 'sys' / 'kernel' / 'osrelease'}: malformed: expected a kernel release" in result.stderr
