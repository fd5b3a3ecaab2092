"""The container image, really built with buildah and run on this host's /proc and /sys (`make test-image`).

No registry is reachable, so the base image is made locally by deploy/image/local-base.sh (debootstrap from the
Debian mirror apt uses here, cached under /var/cache/kmem-exporter). Containers run with
`buildah run --isolation chroot` and the host's /proc, /sys (with debugfs) and /dev/kmsg bound where the image's
default flags expect them. Needs root; a missing tool fails the test.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import stat
import subprocess
import time
from typing import Iterator

import pytest
import yaml

from conftest import PROJECT, free_port, is_root, promtool_check_metrics, require_tool
from deploy_paths import privileges_table

from kmem_exporter import __version__
from kmem_exporter.collectors import COLLECTORS
from kmem_exporter.config import parse_args

BASE_IMAGE = "localhost/kmem-exporter-base:bookworm"
LICENSE_IN_IMAGE = "/usr/share/doc/kmem-exporter/LICENSE"
IMAGE = "localhost/kmem-exporter:test"


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
def buildah() -> str:
    if not is_root():
        pytest.fail("the image test needs root (buildah, debootstrap and the host's root-only kernel files)")
    require_tool("debootstrap")
    return require_tool("buildah")


@pytest.fixture(scope="module")
def image(buildah: str) -> dict:
    """Build the image from the working tree and return `buildah inspect` of it."""
    run(str(PROJECT / "deploy" / "image" / "local-base.sh"), BASE_IMAGE)
    run(buildah, "rmi", "--force", IMAGE, check=False)  # the previous run's image would be left untagged
    run(buildah, "build", "--isolation", "chroot", "--format", "docker", "--layers=false",
        "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", *image_build_args(), "--tag", IMAGE, str(PROJECT))
    return json.loads(run(buildah, "inspect", "--type", "image", IMAGE).stdout)


@pytest.fixture
def container(buildah: str, image: dict) -> Iterator[str]:
    name = run(buildah, "from", "--pull-never", IMAGE).stdout.strip()
    yield name
    run(buildah, "rm", name, check=False)


def bind(source: str, destination: str) -> str:
    """A read-only bind of a host path; a device node keeps working (buildah makes binds nodev otherwise)."""
    options = "ro,dev" if stat.S_ISCHR(os.stat(source).st_mode) else "ro"
    return f"--volume={source}:{destination}:{options}"


def host_mounts() -> list[str]:
    """Binds of the host's kernel files where the image's default flags look for them."""
    mounts = [("/proc", "/host/proc"), ("/sys", "/host/sys")]
    if os.path.ismount("/sys/kernel/debug"):
        mounts.append(("/sys/kernel/debug", "/host/sys/kernel/debug"))
    mounts.append(("/dev/kmsg", "/host/dev/kmsg"))
    return [bind(source, destination) for source, destination in mounts]


def scrape_in(buildah: str, container: str, image: dict, *options: str) -> subprocess.CompletedProcess[str]:
    """`kmem-exporter scrape` in the container, with the image's own default flags."""
    config = image["Docker"]["config"]
    assert config["Cmd"][0] == "serve"
    return run(buildah, "run", "--isolation", "chroot", *host_mounts(), *options, container, "--",
               *config["Entrypoint"], "scrape", *config["Cmd"][1:], check=False)


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


def test_image_carries_the_license_and_the_revision(buildah: str, container: str, image: dict) -> None:
    """LICENSE is in the image, and the exporter reports the revision the image was built from."""
    result = run(buildah, "run", "--isolation", "chroot", container, "--", "cat", LICENSE_IN_IMAGE)
    assert result.stdout == (PROJECT / "LICENSE").read_text()
    result = scrape_in(buildah, container, image)
    revision = image["Docker"]["config"]["Labels"]["org.opencontainers.image.revision"]
    assert f'kmem_exporter_build_info{{revision="{revision}",version="{__version__}"}} 1.0' in result.stdout


def test_image_holds_only_the_installed_exporter(buildah: str, container: str) -> None:
    """The source tree is not copied into the final stage, and pip is gone from the exporter's virtualenv."""
    script = ("import importlib.util, pathlib, kmem_exporter; print(kmem_exporter.__file__); "
              "print(importlib.util.find_spec('pip') is None); print(pathlib.Path('/src').exists())")
    result = run(buildah, "run", "--isolation", "chroot", container, "--", "python3", "-c", script)
    module, no_pip, has_src = result.stdout.split()
    assert module.startswith("/opt/kmem-exporter/lib/") and module.endswith("/site-packages/kmem_exporter/__init__.py")
    assert no_pip == "True"
    assert has_src == "False"


def test_scrape_as_the_default_user(buildah: str, container: str, image: dict) -> None:
    """As nobody, world-readable files still work: buddyinfo is served and the exposition is clean."""
    result = scrape_in(buildah, container, image)
    assert result.stdout, result.stderr
    assert promtool_check_metrics(result.stdout) == ""
    assert re.search(r'^kmem_buddy_free_blocks\{node="0",order="0",zone="\w+"\} \d', result.stdout, re.M)
    assert collector_success(result.stdout)["buddyinfo"] == 1


def bounding_set() -> list[str]:
    """The capabilities this process may hold, as CAP_* names (`setpriv --dump`)."""
    dump = run(require_tool("setpriv"), "--dump").stdout
    (line,) = [entry for entry in dump.splitlines() if entry.startswith("Capability bounding set:")]
    return [f"CAP_{name.upper()}" for name in line.split(":", 1)[1].strip().split(",")]


DAEMONSETS = (PROJECT / "deploy" / "kubernetes" / "base" / "daemonset.yaml",
              PROJECT / "deploy" / "kubernetes" / "components" / "kernel-log" / "daemonset.yaml")


def daemonset_pods() -> dict[str, dict]:
    """The pod spec of each DaemonSet container (the base's and the kernel-log component's), by container name."""
    pods = {}
    for path in DAEMONSETS:
        pod = yaml.safe_load(path.read_text())["spec"]["template"]["spec"]
        pods.update({c["name"]: pod for c in pod["containers"]})
    return pods


@pytest.mark.parametrize("name", sorted(daemonset_pods()))
def test_daemonset_containers_serve_their_collectors(buildah: str, container: str, name: str) -> None:
    """Each DaemonSet container's flags, mounts, user and capabilities, reproduced with buildah: every collector it
    enables succeeds on this host. (No device cgroup here: that /dev/kmsg needs a privileged container in
    Kubernetes cannot be shown.)"""
    pod = daemonset_pods()[name]
    (spec,) = [c for c in pod["containers"] if c["name"] == name]
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    mounts = [bind(volumes[m["name"]], m["mountPath"]) for m in spec["volumeMounts"]]
    context = spec["securityContext"]
    if context.get("privileged"):
        capabilities = [f"--cap-add={','.join(bounding_set())}"]  # all this machine lets a process have
    else:
        added = ",".join(f"CAP_{c}" for c in context["capabilities"]["add"])
        capabilities = ["--cap-drop=all", f"--cap-add={added}"]
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    assert spec["args"][0] == "serve"
    result = run(buildah, "run", "--isolation", "chroot", "--user", user, *capabilities, *mounts, container, "--",
                 "kmem-exporter", "scrape", *spec["args"][1:], check=False)
    assert promtool_check_metrics(result.stdout) == ""
    success = collector_success(result.stdout)
    _, config = parse_args(spec["args"][1:])
    assert success == {collector: 1.0 for collector in config.enabled_collectors}, result.stderr
    assert result.returncode == 0, result.stderr


def test_every_default_collector_runs_in_the_image_as_root(buildah: str, container: str, image: dict) -> None:
    """As root with the capabilities docs/deployment.md lists and the image's default flags, every default collector
    succeeds on this host."""
    table = privileges_table((PROJECT / "docs" / "deployment.md").read_text())
    listed = ",".join(sorted(set().union(*(row.capabilities for row in table.values()))))
    result = scrape_in(buildah, container, image, "--user", "0:0", f"--cap-add={listed}")
    assert promtool_check_metrics(result.stdout) == ""
    enabled = {name for name, cls in COLLECTORS.items() if cls.default_enabled}
    assert collector_success(result.stdout) == {name: 1.0 for name in enabled}, result.stderr


def test_healthcheck_command_passes_against_the_server(buildah: str, container: str, image: dict) -> None:
    """The image's HEALTHCHECK command, run in the container, succeeds against `serve` and fails without it."""
    config = image["Docker"]["config"]
    test = config["Healthcheck"]["Test"]
    assert test[0] == "CMD"
    check = [buildah, "run", "--isolation", "chroot", container, "--", *test[1:]]
    assert run(*check, check=False).returncode != 0  # nothing listening yet

    port = free_port()
    listen = f"--web.listen-address=127.0.0.1:{port}"
    check[-1] = check[-1].replace(":9792/", f":{port}/")
    server = subprocess.Popen(
        [buildah, "run", "--isolation", "chroot", *host_mounts(), container, "--",
         *config["Entrypoint"], *config["Cmd"], listen],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while run(*check, check=False).returncode != 0:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the server never became healthy"
            time.sleep(0.5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
