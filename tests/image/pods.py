"""The DaemonSet containers of the rendered Kubernetes manifests, run by podman with runc: the podman flags each pod
spec implies, derived from `kubectl kustomize deploy/kubernetes` (never from a copy), and a served container's life.

This machine's own flags come on top (MACHINE_FLAGS): runc, because crun refuses the hybrid cgroup layout; lower
ulimits, because podman's defaults need CAP_SYS_RESOURCE, which is not granted here; no healthcheck, whose timers need
systemd (`--no-healthcheck`: podman 4.3 still asks systemd with `--health-cmd none`; tests run the HEALTHCHECK
command with `podman exec`)."""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

import yaml

from conftest import PROJECT, free_port, require_tool

MACHINE_FLAGS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096", "--no-healthcheck", "--pull=never"]
UNITS = {"": 1, "k": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3}


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    require_tool("runc")
    return subprocess.run([require_tool("podman"), "--runtime", "runc", *args], capture_output=True, text=True,
                          timeout=timeout)


@lru_cache(maxsize=None)
def rendered_containers() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) of every DaemonSet container in the rendered manifests, by container name."""
    kubectl = require_tool("kubectl")
    rendered = subprocess.run([kubectl, "kustomize", str(PROJECT / "deploy" / "kubernetes")], capture_output=True,
                              text=True, timeout=120, check=True).stdout
    containers = {}
    for document in yaml.safe_load_all(rendered):
        if document and document["kind"] == "DaemonSet":
            pod = document["spec"]["template"]["spec"]
            containers.update({c["name"]: (pod, c) for c in pod["containers"]})
    return containers


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (256Mi, 1G, 1000) in bytes."""
    match = re.fullmatch(r"(\d+)([kMG]i?|)", quantity)
    assert match, f"unexpected memory quantity {quantity!r}"
    return int(match.group(1)) * UNITS[match.group(2)]


def podman_flags(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """The `podman run` flags that reproduce what the kubelet applies to the container."""
    pod_context, context = pod.get("securityContext", {}), container.get("securityContext", {})
    user = context.get("runAsUser", pod_context.get("runAsUser"))
    group = context.get("runAsGroup", pod_context.get("runAsGroup"))
    flags = [] if user is None else ["--user", f"{user}:{group if group is not None else user}"]
    if context.get("readOnlyRootFilesystem"):
        flags += ["--read-only", "--read-only-tmpfs=false"]  # nothing writable, as in the pod
    if context.get("privileged"):
        flags.append("--privileged")
    capabilities = context.get("capabilities", {})
    if capabilities.get("drop"):
        flags.append("--cap-drop=" + ",".join("all" if c == "ALL" else f"CAP_{c}" for c in capabilities["drop"]))
    if capabilities.get("add"):
        flags.append("--cap-add=" + ",".join(f"CAP_{c}" for c in capabilities["add"]))
    if context.get("allowPrivilegeEscalation") is False:
        flags.append("--security-opt=no-new-privileges")
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
    if seccomp == "Unconfined":
        flags.append("--security-opt=seccomp=unconfined")  # RuntimeDefault is podman's default profile
    if pod.get("hostNetwork"):
        flags.append("--network=host")
    memory = container.get("resources", {}).get("limits", {}).get("memory")
    if memory is not None:
        flags += [f"--memory={quantity_bytes(memory)}b", f"--memory-swap={quantity_bytes(memory)}b"]
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v}
    for mount in container.get("volumeMounts", []):
        options = ["ro" if mount.get("readOnly") else "rw"]
        if mount.get("mountPropagation") == "HostToContainer":
            options.append("rslave")
        flags.append(f"--volume={volumes[mount['name']]}:{mount['mountPath']}:{','.join(options)}")
    return flags


def listening_args(args: list[str], port: int) -> list[str]:
    """The container's args with its listen address moved to a loopback port (host network: the host's ports)."""
    moved = [f"--web.listen-address=127.0.0.1:{port}" if a.startswith("--web.listen-address=") else a for a in args]
    assert moved != args, "the container's args name no listen address"
    return moved


@dataclass
class Served:
    name: str  # the podman container's
    url: str  # http://127.0.0.1:PORT
    args: list[str]  # the exporter's flags

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()


@contextmanager
def serve_container(image: str, name: str) -> Iterator[Served]:
    """The DaemonSet container `name` running detached with its derived flags, until /-/ready answers 200."""
    pod, container = rendered_containers()[name]
    port = free_port()
    args = listening_args(container["args"], port)
    served = Served(f"kmem-test-{name}-{uuid.uuid4().hex[:8]}", f"http://127.0.0.1:{port}", args)
    started = podman("run", "--detach", "--name", served.name, *MACHINE_FLAGS, *podman_flags(pod, container), image,
                     *args)
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if served.get("/-/ready")[0] == 200:
                    break
            except OSError:
                pass
            state = podman("inspect", "--format", "{{.State.Status}}", served.name).stdout.strip()
            assert state == "running", f"{name} is {state}: {podman('logs', served.name).stderr[-3000:]}"
            assert time.monotonic() < deadline, f"{name} never became ready: {podman('logs', served.name).stderr}"
            time.sleep(0.5)
        yield served
    finally:
        podman("rm", "--force", "--time", "10", served.name)


def kernel_records(fd: int) -> list[bytes]:
    """The /dev/kmsg records readable now from `fd` (opened non-blocking), one per read."""
    records = []
    while True:
        try:
            records.append(os.read(fd, 8192))
        except BlockingIOError:
            return records
        except BrokenPipeError:  # overwritten in the ring buffer before we read it: the next read goes on
            continue
