"""A container counts the host's network namespaces without the host's PID namespace (no `hostPID`, no `pid: host`).

A procfs mount shows the processes of the PID namespace it was mounted in, not those of the reader. The host's
`/proc` mounted into a container (the DaemonSet's and the compose file's `/host/proc`) therefore lists every process
of the host, and `/host/proc/<pid>/ns/net` of each is readable with root's capabilities. Checked for real: the
exporter runs in a new PID and mount namespace, as a container's process does, with the host's /proc bind-mounted at
a path of its own and its own /proc mounted for its new PID namespace, as a container runtime sets it up.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT, is_root, require_tool
from metrics_text import collector_success, only_collectors, value
from test_netns import wait_until_in_own_namespace

pytestmark = pytest.mark.live

ONLY_NETNS = only_collectors("netns")
# In the new mount namespace (private, so nothing leaks to the host): the host's /proc at $1, a fresh procfs for
# the new PID namespace at /proc; then the command.
CONTAINER = 'mount --make-rprivate / && mount --bind /proc "$1" && mount -t proc proc /proc && shift && exec "$@"'
ATTEMPTS = 5  # other processes may make or drop network namespaces between two walks; retry until it held still


def netns_walk(procfs: str, host_proc: Path | None = None) -> tuple[float, float]:
    """(kmem_network_namespaces, unreadable processes) of `kmem-exporter scrape --path.procfs=procfs`: on the host,
    or, given `host_proc`, in a new PID and mount namespace with the host's /proc bind-mounted at `host_proc`."""
    command = [sys.executable, "-m", "kmem_exporter", "scrape", f"--path.procfs={procfs}", *ONLY_NETNS]
    if host_proc is not None:
        command = [require_tool("unshare"), "--pid", "--fork", "--mount", "sh", "-c", CONTAINER, "sh",
                   str(host_proc), *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert result.returncode == 0, result.stderr
    assert collector_success(result.stdout) == {"netns": 1}, result.stderr
    return (value(result.stdout, "kmem_network_namespaces"),
            value(result.stdout, "kmem_network_namespaces_unreadable_processes"))


def test_a_container_counts_the_hosts_namespaces_through_the_hosts_proc(tmp_path: Path) -> None:
    assert is_root(), "this test makes PID and mount namespaces"
    host_proc = tmp_path / "host-proc"
    host_proc.mkdir()
    # A network namespace held only by a host process outside the new PID namespace: seen through the host's /proc.
    holder = subprocess.Popen([require_tool("unshare"), "--net", "sleep", "600"])
    try:
        wait_until_in_own_namespace(holder.pid)
        for _ in range(ATTEMPTS):
            before = netns_walk("/proc")
            in_container = netns_walk(str(host_proc), host_proc)
            own_proc = netns_walk("/proc", host_proc)  # the container's own /proc: its own processes only
            if netns_walk("/proc") == before:
                break
        else:
            pytest.fail("the host's network namespaces kept changing")
        assert before[0] >= 2
        assert in_container == before
        assert own_proc[0] < before[0]
    finally:
        holder.kill()
        holder.wait()


def test_the_manifests_mount_the_hosts_proc_and_do_not_share_its_pid_namespace() -> None:
    daemonset = yaml.safe_load((PROJECT / "deploy" / "kubernetes" / "base" / "daemonset.yaml").read_text())
    pod = daemonset["spec"]["template"]["spec"]
    assert "hostPID" not in pod
    assert {"name": "proc", "hostPath": {"path": "/proc", "type": "Directory"}} in pod["volumes"]
    exporter = next(c for c in pod["containers"] if c["name"] == "kmem-exporter")
    assert "--path.procfs=/host/proc" in exporter["args"]
    assert {"name": "proc", "mountPath": "/host/proc", "readOnly": True} in exporter["volumeMounts"]
    compose = yaml.safe_load((PROJECT / "deploy" / "compose" / "compose.yaml").read_text())
    service = compose["services"]["kmem-exporter"]
    assert "pid" not in service
    assert "/proc:/host/proc:ro" in service["volumes"] and "--path.procfs=/host/proc" in service["command"]
