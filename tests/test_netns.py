"""The netns background collector: namespaces of processes plus bind-mounted ones, on a fixture tree and for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import (FIXTURES, PROJECT, fixture_flags, is_root, promtool_check_metrics, require_tool, run_exporter,
                      scrape_fixture, wait_for)
from metrics_text import collector_success, only_collectors, value
from kmem_exporter.collectors.netns import NetnsWalk, walk_network_namespaces
from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.netns import mounted_network_namespaces, parse_namespace_link

ONLY_NETNS = only_collectors("netns")
HOST_MOUNTINFO = (FIXTURES / "netns-bind-mounts" / "proc" / "1" / "mountinfo").read_text()


# ---------------------------------------------------------------------------------------------------- parsers

def test_parse_namespace_link() -> None:
    assert parse_namespace_link("net:[4026531992]", "net") == 4026531992
    for bad in ("mnt:[4026531840]", "net:[]", "net:4026531992", "", "net:[12] "):
        with pytest.raises(ParseError, match="expected a link to 'net:\\[INODE\\]'"):
            parse_namespace_link(bad, "net")


def test_mounted_network_namespaces_of_the_fixture() -> None:
    # /run/netns/blue, /run/netns/red and Docker's mount of blue; the uts namespace mount is not a network one.
    assert mounted_network_namespaces(HOST_MOUNTINFO) == {4026532285, 4026532360}


def test_mounted_network_namespaces_of_a_3_10_kernel() -> None:
    """Before nsfs (3.19) a bind-mounted namespace shows as a proc mount with the namespace as its root."""
    line = "120 19 0:3 net:[4026532455] /run/netns/green rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n"
    assert mounted_network_namespaces(line) == {4026532455}


@pytest.mark.live
def test_this_hosts_mount_table_parses() -> None:
    assert isinstance(mounted_network_namespaces(Path("/proc/self/mountinfo").read_text()), set)


@pytest.mark.parametrize("text", ["22 27 0:21 / /proc rw\n", "415 412 0:4 net:[4026532285] /run/netns/bl\n",
                                  "a b c d e f g h i j\n"])
def test_malformed_mountinfo(text: str) -> None:
    with pytest.raises(ParseError, match="line 1: expected 'ID PARENT"):
        mounted_network_namespaces(text)


@given(st.text())
def test_random_mountinfo_raises_only_parse_error(text: str) -> None:
    try:
        mounted_network_namespaces(text)
    except ParseError:
        pass


@given(st.integers(min_value=0, max_value=len(HOST_MOUNTINFO)))
def test_truncated_mountinfo_raises_only_parse_error(cut: int) -> None:
    try:
        found = mounted_network_namespaces(HOST_MOUNTINFO[:cut])
    except ParseError:
        return
    assert found <= {4026532285, 4026532360}


@given(st.text(max_size=40), st.sampled_from(["net", "mnt"]))
def test_random_link_raises_only_parse_error(target: str, kind: str) -> None:
    try:
        parse_namespace_link(target, kind)
    except ParseError:
        pass


# ---------------------------------------------------------------------------------------------------- fixture trees

def test_walk_of_the_fixture_tree() -> None:
    # Namespaces: the host's (pids 1, 42), blue (pid 2000 and two bind mounts), red (a bind mount only), the
    # container's (pids 1000, 1001). Pid 3000 exited during the walk; pid 42's mount table is never read.
    assert walk_network_namespaces(FIXTURES / "netns-bind-mounts" / "proc", 1 << 20) == NetnsWalk(4, 5, 0)


def test_collector_on_the_fixture_tree() -> None:
    result = scrape_fixture("netns-bind-mounts", *ONLY_NETNS)
    assert result.returncode == 0, result.stderr
    assert collector_success(result.stdout) == {"netns": 1}
    assert promtool_check_metrics(result.stdout) == ""
    assert value(result.stdout, "kmem_network_namespaces") == 4
    assert value(result.stdout, "kmem_network_namespaces_unreadable_processes") == 0
    assert value(result.stdout, "kmem_background_pass_timestamp_seconds", collector="netns") > 0


def test_malformed_mount_table_fails_the_collector_with_its_path() -> None:
    result = scrape_fixture("broken-netns-mountinfo", *ONLY_NETNS)
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"netns": 0}
    assert "broken-netns-mountinfo/proc/1/mountinfo: malformed: line 7:" in result.stderr


def test_tree_without_processes_is_an_error() -> None:
    # numa4 holds only the fragmentation files of its host, no process table.
    assert not any(entry.name.isdigit() for entry in (FIXTURES / "numa4" / "proc").iterdir())
    result = scrape_fixture("numa4", *ONLY_NETNS)
    assert result.returncode == 1
    assert "numa4/proc: no process with an ns/net link (is path.procfs a procfs?)" in result.stderr


def test_interval_option_is_validated() -> None:
    result = run_exporter("scrape", "--collector.netns.interval=soon", *ONLY_NETNS)
    assert result.returncode == 2
    assert "collector.netns.interval" in result.stderr


def test_served_over_http_and_refreshed_in_the_background(exporter_factory) -> None:  # type: ignore[no-untyped-def]
    exporter = exporter_factory(*fixture_flags("netns-bind-mounts"), *ONLY_NETNS, "--collector.netns.interval=200ms")
    first = exporter.metrics()
    assert promtool_check_metrics(first) == ""
    assert value(first, "kmem_network_namespaces") == 4
    passed = value(first, "kmem_background_pass_timestamp_seconds", collector="netns")
    # A later pass has a later timestamp; the scrape itself never waits for a pass.
    later = wait_for("the background pass to run again", exporter.metrics,
                     lambda e: value(e, "kmem_background_pass_timestamp_seconds", collector="netns") > passed)
    assert value(later, "kmem_network_namespaces") == 4


# ---------------------------------------------------------------------------------------------------- live

def exporter_count() -> float:
    result = run_exporter("scrape", *ONLY_NETNS)
    assert result.returncode == 0, result.stderr
    assert promtool_check_metrics(result.stdout) == ""
    return value(result.stdout, "kmem_network_namespaces")


def independent_namespaces() -> set[str]:
    """Network namespaces (their inode numbers) as util-linux sees them: lsns for processes' ones, findmnt for nsfs
    mounts (of this mount namespace, which on this host is every process's)."""
    lsns = subprocess.run([require_tool("lsns"), "-t", "net", "-n", "-o", "NS"], capture_output=True, text=True,
                          check=True).stdout.split()
    findmnt = subprocess.run([require_tool("findmnt"), "-n", "-t", "nsfs", "-o", "FSROOT"], capture_output=True,
                             text=True).stdout
    mounted = re.findall(r"net:\[(\d+)\]", findmnt)
    return set(lsns) | set(mounted)


def counted_alike() -> set[str]:
    """The namespaces util-linux sees, once the exporter has counted as many: both looked at while the set held
    still, since other work on this machine makes and removes namespaces."""

    def look() -> tuple[float, set[str]] | None:
        seen = independent_namespaces()
        count = exporter_count()
        return (count, seen) if independent_namespaces() == seen else None

    count, seen = wait_for("the network namespaces to hold still while counted", look)
    assert count == len(seen), (count, sorted(seen))
    return seen


def namespace_of(path: str) -> str:
    """The inode number of the network namespace at `path` (a bind mount or /proc/PID/ns/net)."""
    return str(os.stat(path).st_ino)


@pytest.fixture
def netns_names() -> Iterator[list[str]]:
    """Names for `ip netns add`; whatever of them exists at the end is deleted."""
    ip = require_tool("ip")
    created = [f"kmemtest-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    yield created
    for name in created:
        subprocess.run([ip, "netns", "delete", name], capture_output=True)


def wait_until_in_own_namespace(pid: int) -> None:
    """Until `unshare` has made its new network namespace (it does so before it runs its command)."""
    own = os.readlink("/proc/self/ns/net")
    wait_for(f"process {pid} to enter a network namespace of its own",
             lambda: os.readlink(f"/proc/{pid}/ns/net") != own)


@pytest.mark.live
def test_live_count_follows_ip_netns(netns_names: list[str]) -> None:
    assert is_root(), "the live netns test needs root (ip netns add)"
    ip = require_tool("ip")
    counted_alike()
    for name in netns_names:
        subprocess.run([ip, "netns", "add", name], check=True)
    added = {namespace_of(f"/run/netns/{name}") for name in netns_names}
    assert len(added) == 2 and added <= counted_alike()
    # A namespace held only by a process counts too, and is gone with the process.
    holder = subprocess.Popen([require_tool("unshare"), "--net", "sleep", "600"])
    try:
        wait_until_in_own_namespace(holder.pid)
        assert added | {namespace_of(f"/proc/{holder.pid}/ns/net")} <= counted_alike()
    finally:
        holder.kill()
        holder.wait()
    for name in netns_names:
        subprocess.run([ip, "netns", "delete", name], check=True)
    counted_alike()  # the same count as util-linux without them


@pytest.mark.live
def test_live_unprivileged_walk_reports_unreadable_processes() -> None:
    assert is_root(), "this test drops from root to nobody"
    setpriv = require_tool("setpriv")
    result = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                             "kmem_exporter", "scrape", *ONLY_NETNS], capture_output=True, text=True, timeout=60,
                            cwd=PROJECT)
    assert result.returncode == 0, result.stderr
    # nobody can read only its own processes' namespaces; root's processes are reported as unreadable.
    assert value(result.stdout, "kmem_network_namespaces") >= 1
    assert value(result.stdout, "kmem_network_namespaces_unreadable_processes") >= 1
