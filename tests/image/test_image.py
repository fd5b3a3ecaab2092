"""The container image, really built with buildah and run by Debian's podman with runc on this host's /proc and /sys
(`make test-image`).

No registry is reachable, so the base image is made locally by deploy/image/local-base.sh (debootstrap from the
Debian mirror apt uses here, cached under /var/cache/kmem-exporter). Each DaemonSet container of the rendered
Kubernetes manifests (`kubectl kustomize deploy/kubernetes`) runs with the podman flags its pod spec implies: user,
read-only root, capabilities, no-new-privileges, privileged, host network, memory limit, read-only host mounts
(deploy_flags.py). Only the listen address is moved to a free loopback port. Needs root; a missing tool fails the
test.

This machine's own needs, not the manifests': runc (crun refuses the hybrid cgroup layout), lower ulimits (the
defaults need CAP_SYS_RESOURCE, not granted here), and no healthcheck timer (it needs systemd): the HEALTHCHECK
command is run with `podman exec` instead.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import subprocess
import time
from typing import Iterator

import pytest

from conftest import PROJECT, free_port, is_root, promtool_check_metrics, require_tool
from pods import (MACHINE_FLAGS, Served, kernel_records, podman, quantity_bytes, rendered_containers,
                  serve_container)
from deploy_paths import privileges_table

from kmem_exporter import __version__
from kmem_exporter.collectors import COLLECTORS
from kmem_exporter.config import parse_args
from kmem_exporter.parsers.kernel_log_patterns import match_event
from kmem_exporter.parsers.kmsg import parse_record

BASE_IMAGE = "localhost/kmem-exporter-base:bookworm"
LICENSE_IN_IMAGE = "/usr/share/doc/kmem-exporter/LICENSE"
# One tag per checkout, so that image tests of several checkouts on one machine never remove each other's image.
IMAGE = f"localhost/kmem-exporter:test-{hashlib.sha256(str(PROJECT).encode()).hexdigest()[:10]}"
# The host's kernel files where the image's default flags look, as docs/deployment.md runs it (`--device` lets
# /dev/kmsg through the container's device cgroup).
HOST_ROOTS = ["--volume=/proc:/host/proc:ro", "--volume=/sys:/host/sys:ro", "--device=/dev/kmsg:/host/dev/kmsg:r"]


def image_build_args() -> list[str]:
    """The build arguments `make image` derives (version, revision, creation time), from `make -n image`."""
    dry_run = run("make", "-s", "-C", str(PROJECT), "-n", "image").stdout
    return [word for arg in re.findall(r"--build-arg [A-Z]+=\S+", dry_run) for word in arg.split(" ", 1)]


def run(*command: str, timeout: float = 1200, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{output}")
    return result


@pytest.fixture(scope="module")
def image() -> dict:
    """Build the image from the working tree with buildah and return `buildah inspect` of it."""
    if not is_root():
        pytest.fail("the image test needs root (buildah, podman, debootstrap and the host's root-only kernel files)")
    require_tool("debootstrap")
    buildah = require_tool("buildah")
    run(str(PROJECT / "deploy" / "image" / "local-base.sh"), BASE_IMAGE)
    run(buildah, "rmi", "--force", IMAGE, check=False)  # the previous run's image would be left untagged
    run(buildah, "build", "--isolation", "chroot", "--format", "docker", "--layers=false",
        "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", *image_build_args(), "--tag", IMAGE, str(PROJECT))
    return json.loads(run(buildah, "inspect", "--type", "image", IMAGE).stdout)


def in_image(*options: str) -> subprocess.CompletedProcess[str]:
    """`podman run --rm` of the image with this machine's flags; `options` hold the image and the command."""
    return podman("run", "--rm", *MACHINE_FLAGS, *options)


def scrape_in(image: dict, *options: str) -> subprocess.CompletedProcess[str]:
    """`kmem-exporter scrape` in a container with the host's kernel files where the image's default flags look."""
    config = image["Docker"]["config"]
    assert config["Cmd"][0] == "serve"
    return in_image(*HOST_ROOTS, *options, IMAGE, "scrape", *config["Cmd"][1:])


def collector_success(exposition: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^kmem_collector_success\{collector="([^"]+)"\} (\S+)$', exposition, re.M)}


def test_image_metadata(image: dict) -> None:
    config = image["Docker"]["config"]
    assert config["Entrypoint"] == ["kmem-exporter"]
    assert config["User"] == "65534:65534"
    assert "9792/tcp" in config["ExposedPorts"]
    assert "/-/healthy" in " ".join(config["Healthcheck"]["Test"])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "kmem-exporter"
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert re.fullmatch(r"[0-9a-f]{12}|unknown", labels["org.opencontainers.image.revision"])
    created = datetime.datetime.fromisoformat(labels["org.opencontainers.image.created"].replace("Z", "+00:00"))
    assert created.tzinfo is not None and abs(datetime.datetime.now(datetime.timezone.utc) - created).days < 1
    assert labels["org.opencontainers.image.vendor"] == "The kmem-exporter authors"


def test_image_carries_the_license_and_the_revision(image: dict) -> None:
    """LICENSE is in the image, and the exporter reports the revision the image was built from."""
    result = in_image("--entrypoint", "cat", IMAGE, LICENSE_IN_IMAGE)
    assert result.stdout == (PROJECT / "LICENSE").read_text(), result.stderr
    result = scrape_in(image)
    revision = image["Docker"]["config"]["Labels"]["org.opencontainers.image.revision"]
    assert f'kmem_exporter_build_info{{revision="{revision}",version="{__version__}"}} 1.0' in result.stdout


def test_image_holds_only_the_installed_exporter(image: dict) -> None:
    """The source tree is not copied into the final stage, and pip is gone from the exporter's virtualenv."""
    script = ("import importlib.util, pathlib, kmem_exporter; print(kmem_exporter.__file__); "
              "print(importlib.util.find_spec('pip') is None); print(pathlib.Path('/src').exists())")
    result = in_image("--entrypoint", "python3", IMAGE, "-c", script)
    module, no_pip, has_src = result.stdout.split()
    assert module.startswith("/opt/kmem-exporter/lib/") and module.endswith("/site-packages/kmem_exporter/__init__.py")
    assert no_pip == "True"
    assert has_src == "False"


def test_scrape_as_the_default_user(image: dict) -> None:
    """As nobody, world-readable files still work: buddyinfo is served and the exposition is clean."""
    result = scrape_in(image)
    assert result.stdout, result.stderr
    assert promtool_check_metrics(result.stdout) == ""
    assert re.search(r'^kmem_buddy_free_blocks\{node="0",order="0",zone="\w+"\} \d', result.stdout, re.M)
    assert collector_success(result.stdout)["buddyinfo"] == 1


def test_every_default_collector_runs_in_the_image_as_root(image: dict) -> None:
    """As root with only the capabilities docs/deployment.md lists and the image's default flags, every default
    collector succeeds on this host."""
    table = privileges_table((PROJECT / "docs" / "deployment.md").read_text())
    listed = ",".join(sorted(set().union(*(row.capabilities for row in table.values()))))
    result = scrape_in(image, "--user", "0:0", "--cap-drop=all", f"--cap-add={listed}")
    assert promtool_check_metrics(result.stdout) == ""
    enabled = {name for name, cls in COLLECTORS.items() if cls.default_enabled}
    assert collector_success(result.stdout) == {name: 1.0 for name in enabled}, result.stderr


@pytest.fixture(scope="module")
def exporter_container(image: dict) -> Iterator[Served]:
    with serve_container(IMAGE, "kmem-exporter") as served:
        yield served


@pytest.fixture(scope="module")
def kernel_log_container(image: dict) -> Iterator[Served]:
    with serve_container(IMAGE, "kernel-log") as served:
        yield served


CONTAINERS = {"kmem-exporter": "exporter_container", "kernel-log": "kernel_log_container"}


def test_every_daemonset_container_is_run() -> None:
    assert set(rendered_containers()) == set(CONTAINERS)


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_the_container_runs_as_the_manifests_say(request: pytest.FixtureRequest, name: str) -> None:
    """podman applied what the pod spec asks: user, read-only root, capabilities, privileges, host network, memory
    limit and read-only host mounts (as podman itself reports them)."""
    served: Served = request.getfixturevalue(CONTAINERS[name])
    pod, container = rendered_containers()[name]
    context = container["securityContext"]
    inspect = json.loads(podman("inspect", served.name).stdout)[0]
    host = inspect["HostConfig"]
    assert inspect["Config"]["User"] == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    assert host["ReadonlyRootfs"] is True and host["NetworkMode"] == "host"
    assert host["Memory"] == quantity_bytes(container["resources"]["limits"]["memory"]) > 0
    assert host["Privileged"] is bool(context.get("privileged"))
    if not context.get("privileged"):
        assert "no-new-privileges" in " ".join(host["SecurityOpt"])
        assert sorted(inspect["EffectiveCaps"]) == sorted(f"CAP_{c}" for c in context["capabilities"]["add"])
    mounts = {m["Destination"]: m for m in inspect["Mounts"]}
    for mount in container["volumeMounts"]:
        assert mounts[mount["mountPath"]]["RW"] is False


def exporter_counts(text: str, name: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf'^{name}\{{(.*)\}} (\S+)$', text, re.M)}


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_every_collector_succeeds_and_the_container_is_ready(request: pytest.FixtureRequest, name: str) -> None:
    served: Served = request.getfixturevalue(CONTAINERS[name])
    assert served.get("/-/ready") == (200, "OK\n")
    status, text = served.get("/metrics")
    assert status == 200
    assert promtool_check_metrics(text) == ""
    _, config = parse_args(served.args[1:])
    assert config.enabled_collectors
    assert collector_success(text) == {collector: 1.0 for collector in config.enabled_collectors}


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_the_healthcheck_command_passes_in_the_container(request: pytest.FixtureRequest, image: dict,
                                                         name: str) -> None:
    """The image's HEALTHCHECK command, run in the container with `podman exec` (its port moved with the listen
    address), succeeds; pointed at a port nobody listens on, it fails."""
    served: Served = request.getfixturevalue(CONTAINERS[name])
    test = image["Docker"]["config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD" and ":9792/" in test[-1]
    port = served.url.rpartition(":")[2]
    check = podman("exec", served.name, *test[1:-1], test[-1].replace(":9792/", f":{port}/"))
    assert check.returncode == 0, check.stderr
    closed = podman("exec", served.name, *test[1:-1], test[-1].replace(":9792/", f":{free_port()}/"))
    assert closed.returncode != 0


OOM_KILL = re.compile(r'^kmem_kernel_log_events_total\{event="oom_kill"\} (\S+)$', re.M)
USER_LINE = "kmem-exporter image test: Killed process 4242 (user-space) total-vm:1024kB, anon-rss:0kB"


def test_the_kernel_log_container_counts_the_kernels_events_only(kernel_log_container: Served) -> None:
    """A line user space writes to /dev/kmsg, worded as an OOM kill, is not counted. Then the kernel itself kills a
    process: a container that outgrows its memory limit. Its "Killed process" record, read by the kernel-log
    container after the user line, is counted: exactly the kernel's own OOM kill records since the start."""
    def count() -> float:
        status, text = kernel_log_container.get("/metrics")
        match = OOM_KILL.search(text)
        assert status == 200 and match, text[-2000:]
        return float(match.group(1))

    before = count()
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.lseek(fd, 0, os.SEEK_END)  # only the records written from now on
        with open("/dev/kmsg", "w") as kmsg:
            kmsg.write(USER_LINE + "\n")
        hog = podman("run", "--rm", *MACHINE_FLAGS, "--memory=64m", "--memory-swap=64m", "--entrypoint", "python3",
                     IMAGE, "-c", "blocks = []\nwhile True:\n    blocks.append(b'x' * (1 << 20))")
        assert hog.returncode == 137, hog.stderr  # SIGKILL: the kernel's OOM killer
        records = [parse_record(data) for data in kernel_records(fd)]
        assert [r.facility for r in records if r.text == USER_LINE] == [1]  # LOG_USER, not the kernel
        deadline = time.monotonic() + 60
        while True:
            kernel_kills = [r for r in records if r.from_kernel
                            and (event := match_event(r.text)) is not None and event.event == "oom_kill"]
            assert kernel_kills, [r.text for r in records]
            if count() >= before + len(kernel_kills):
                break
            assert time.monotonic() < deadline, f"kernel OOM kills never counted: {count()} of {before} + " \
                                                f"{len(kernel_kills)}"
            time.sleep(0.5)
            records += [parse_record(data) for data in kernel_records(fd)]
        records += [parse_record(data) for data in kernel_records(fd)]
        kernel_kills = [r for r in records if r.from_kernel
                        and (event := match_event(r.text)) is not None and event.event == "oom_kill"]
        assert count() == before + len(kernel_kills)  # the user line was read first, and not counted
    finally:
        os.close(fd)
