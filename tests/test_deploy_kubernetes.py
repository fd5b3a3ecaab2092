"""deploy/kubernetes: schema validation (Kubernetes' schemas for the built-in objects, the Prometheus Operator's CRD
types for PodMonitor and PrometheusRule), flags and mounts against what the exporter reads, the Prometheus Operator
objects, and the PrometheusRule kept in step with alerts/."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import kubernetes_validate
import pydantic
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator

from conftest import PROJECT, require_tool
from deploy_paths import Mount, mismatches, parse_container_args, privileges_table

from kmem_exporter.collectors import COLLECTORS
from kmem_exporter.config import Config

KUBERNETES = PROJECT / "deploy" / "kubernetes"
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
CRD_KINDS = {"PodMonitor", "PrometheusRule"}

sys.path.insert(0, str(PROJECT / "mixin"))
import render  # noqa: E402


def manifests() -> dict[str, dict]:
    """Every object of the kustomization, by kind."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    objects = {}
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((KUBERNETES / name).read_text()):
            assert document["kind"] not in objects, f"two {document['kind']} objects"
            objects[document["kind"]] = document
    return objects


def containers() -> dict[str, dict]:
    return {c["name"]: c for c in manifests()["DaemonSet"]["spec"]["template"]["spec"]["containers"]}


def container_mounts(container: dict) -> list[Mount]:
    pod = manifests()["DaemonSet"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = []
    for mount in container["volumeMounts"]:
        host = volumes[mount["name"]]["hostPath"]["path"]
        mounts.append(Mount(PurePosixPath(host), PurePosixPath(mount["mountPath"]), mount.get("readOnly", False)))
    return mounts


def container_config(container: dict) -> Config:
    assert container["args"][0] == "serve"
    return parse_container_args(container["args"][1:])


def readme_privileges() -> dict:
    return privileges_table((PROJECT / "README.md").read_text())


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert set(manifests()) == {"ServiceAccount", "DaemonSet", "Service", "PodMonitor", "PrometheusRule"}
    for container in containers().values():
        assert kustomization["images"][0]["name"] == container["image"].split(":")[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_builtin_objects_validate_against_the_kubernetes_schemas(version: str) -> None:
    for kind, obj in manifests().items():
        if kind in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)  # raises ValidationError


def test_the_validation_catches_a_broken_daemonset() -> None:
    """The schema check is real: a misspelt field and a wrong type are refused."""
    broken = copy.deepcopy(manifests()["DaemonSet"])
    broken["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    broken = copy.deepcopy(manifests()["DaemonSet"])
    broken["spec"]["template"]["spec"]["hostNetwork"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def crd_model(kind: str) -> type[pydantic.BaseModel]:
    """The Prometheus Operator's own type for `kind`: PyPI's cloudcoil.models.prometheus_operator, generated from
    the operator's CRD schemas (required fields, enums, patterns, types)."""
    return {"PodMonitor": prometheus_operator.PodMonitor, "PrometheusRule": prometheus_operator.PrometheusRule}[kind]


def validate_crd_object(obj: dict) -> None:
    """Raises pydantic.ValidationError on a wrong value; fails on a field the schema does not know (the model
    ignores it, as the API server prunes it, so the object would not come back as written)."""
    model = crd_model(obj["kind"]).model_validate(obj)
    assert model.model_dump(mode="json", by_alias=True, exclude_unset=True) == obj, "a field the CRD does not know"


@pytest.mark.parametrize("kind", sorted(CRD_KINDS))
def test_operator_objects_validate_against_the_crd_schemas(kind: str) -> None:
    validate_crd_object(manifests()[kind])


def test_the_crd_validation_catches_broken_operator_objects() -> None:
    broken = copy.deepcopy(manifests()["PodMonitor"])
    broken["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["action"] = "rename"
    with pytest.raises(pydantic.ValidationError):
        validate_crd_object(broken)
    broken = copy.deepcopy(manifests()["PodMonitor"])
    broken["spec"]["podMetricsEndpoints"][0]["portName"] = broken["spec"]["podMetricsEndpoints"][0].pop("port")
    with pytest.raises(AssertionError, match="a field the CRD does not know"):
        validate_crd_object(broken)
    broken = copy.deepcopy(manifests()["PrometheusRule"])
    broken["spec"]["groups"][0]["rules"][-1]["for"] = "a while"
    with pytest.raises(pydantic.ValidationError):
        validate_crd_object(broken)


def test_every_default_collector_runs_in_exactly_one_container() -> None:
    enabled = [name for container in containers().values() for name in container_config(container).enabled_collectors]
    assert sorted(enabled) == sorted(name for name, cls in COLLECTORS.items() if cls.default_enabled)


@pytest.mark.parametrize("name", ["kmem-exporter", "kernel-log"])
def test_flags_and_mounts_match_what_the_exporter_reads(name: str) -> None:
    """Every root the container's collectors read is placed by a flag inside a read-only mount of that same host
    path, and every mount is read by one of them."""
    container = containers()[name]
    assert mismatches(container["args"][1:], container_mounts(container)) == []


def test_the_mount_check_finds_a_wrong_mount() -> None:
    container = containers()["kmem-exporter"]
    mounts = container_mounts(container)
    args = container["args"][1:]
    without_proc = [m for m in mounts if m.host != PurePosixPath("/proc")]
    assert mismatches(args, without_proc) == ["procfs at /host/proc is not inside any mount"]
    moved = [m._replace(host=PurePosixPath("/var")) if m.host == PurePosixPath("/sys/kernel/debug") else m
             for m in mounts]
    assert mismatches(args, moved) == ["debugfs at /host/sys/kernel/debug shows the host's /var, not /sys/kernel/debug"]
    # cgroupfs and debugfs follow --path.sysfs by default, so dropping their flags changes nothing here ...
    assert mismatches([a for a in args if not a.startswith(("--path.cgroupfs", "--path.debugfs"))], mounts) == []
    # ... but dropping --path.procfs leaves the exporter on the container's own /proc.
    assert mismatches([a for a in args if not a.startswith("--path.procfs")], mounts) == [
        "procfs is left at /proc: the exporter would read the container's own files",
        "/host/proc (host /proc) is mounted but no enabled collector reads it",
    ]
    assert any("mounted writable" in p for p in mismatches(args, [m._replace(read_only=False) for m in mounts]))
    extra = mounts + [Mount(PurePosixPath("/etc"), PurePosixPath("/host/etc"), True)]
    assert mismatches(args, extra) == ["/host/etc (host /etc) is mounted but no enabled collector reads it"]
    kernel_log = containers()["kernel-log"]
    assert mismatches([a for a in kernel_log["args"][1:] if not a.startswith("--path.kmsg")],
                      container_mounts(kernel_log)) == [
        "kmsg is left at /dev/kmsg: the exporter would read the container's own files",
        "/host/dev/kmsg (host /dev/kmsg) is mounted but no enabled collector reads it",
    ]


def test_hostpath_types_fit_what_they_mount() -> None:
    pod = manifests()["DaemonSet"]["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        expected = "CharDevice" if volume["hostPath"]["path"].startswith("/dev/") else "Directory"
        assert volume["hostPath"]["type"] == expected, volume


@pytest.mark.parametrize("name", ["kmem-exporter", "kernel-log"])
def test_probes_and_ports_match_the_exporter(name: str) -> None:
    container = containers()[name]
    port = container_config(container).listen_host_port[1]
    (declared,) = container["ports"]
    assert declared["containerPort"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": declared["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": declared["name"]}
    service_ports = {p["targetPort"]: p["port"] for p in manifests()["Service"]["spec"]["ports"]}
    assert service_ports[declared["name"]] == port
    assert manifests()["Service"]["spec"]["clusterIP"] == "None"


def test_ports_differ_on_the_host_network() -> None:
    ports = [container_config(c).listen_host_port[1] for c in containers().values()]
    assert len(set(ports)) == len(ports)


def test_runs_on_every_node() -> None:
    pod = manifests()["DaemonSet"]["spec"]["template"]["spec"]
    assert {"operator": "Exists"} in pod["tolerations"]
    assert pod["hostNetwork"] is True  # conntrack counts are per network namespace: the host's is wanted


@pytest.mark.parametrize("name", ["kmem-exporter", "kernel-log"])
def test_security_context_grants_what_the_readme_says_the_collectors_need(name: str) -> None:
    """An unprivileged container drops everything and adds exactly the capabilities its collectors need according
    to the README's Privileges table; only collectors whose row says they need a privileged container run in one."""
    container = containers()[name]
    context = container["securityContext"]
    enabled = container_config(container).enabled_collectors
    table = readme_privileges()
    assert set(enabled) <= set(table), "a collector without a row in the README's Privileges table"
    assert context["readOnlyRootFilesystem"] is True
    if context.get("privileged"):
        assert all("privileged container" in table[c].needs for c in enabled), enabled
        return
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    needed = set().union(*(table[c].capabilities for c in enabled))
    assert {f"CAP_{c}" for c in context["capabilities"]["add"]} == needed


def test_no_api_access() -> None:
    assert manifests()["ServiceAccount"]["automountServiceAccountToken"] is False
    assert manifests()["DaemonSet"]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_resources_are_bounded() -> None:
    for container in containers().values():
        resources = container["resources"]
        assert set(resources) == {"requests", "limits"}
        assert set(resources["limits"]) == {"cpu", "memory"}
        assert mebibytes(resources["requests"]["memory"]) < mebibytes(resources["limits"]["memory"])


def test_main_container_memory_matches_the_systemd_unit() -> None:
    """The serving container gets the bound the systemd unit gives (MemoryMax), which hostile clients cannot pass."""
    unit = (PROJECT / "deploy" / "systemd" / "kmem-exporter.service").read_text()
    memory_max = re.search(r"^MemoryMax=(\d+)M$", unit, re.M)
    assert memory_max is not None
    resources = containers()["kmem-exporter"]["resources"]
    assert mebibytes(resources["limits"]["memory"]) == int(memory_max.group(1)) == 256
    assert mebibytes(resources["requests"]["memory"]) == 64


def mebibytes(quantity: str) -> int:
    assert quantity.endswith("Mi"), quantity
    return int(quantity[:-2])


def test_podmonitor_scrapes_every_container_and_keeps_the_node_label() -> None:
    monitor = manifests()["PodMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    pod_labels = manifests()["DaemonSet"]["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    endpoints = {e["port"]: e for e in monitor["spec"]["podMetricsEndpoints"]}
    ports = {c["ports"][0]["name"]: c for c in containers().values()}
    assert set(endpoints) == set(ports)
    for port, endpoint in endpoints.items():
        config = container_config(ports[port])
        assert endpoint["path"] == config.telemetry_path
        # The scrape must not time out before the exporter's own collector timeout does.
        assert float(endpoint["scrapeTimeout"].rstrip("s")) > config.collector_timeout
        # `node` is the exporter's NUMA node label: the Kubernetes node name must go elsewhere.
        targets = {r["targetLabel"]: r for r in endpoint["relabelings"]}
        assert "node" not in targets
        assert targets["instance"]["sourceLabels"] == ["__meta_kubernetes_pod_node_name"]


def test_checked_in_prometheusrule_is_what_the_mixin_renders() -> None:
    checked_in = (KUBERNETES / "prometheusrule.yaml").read_text()
    assert checked_in == render.render()[render.PROMETHEUSRULE], "run `make mixin`"


def test_prometheusrule_holds_every_group_of_alerts() -> None:
    rule = manifests()["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    expected = []
    for path in sorted((PROJECT / "alerts").glob("*.y*ml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and "groups" in data:
            expected.extend(data["groups"])
    assert rule["spec"]["groups"] == expected
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item), item
            assert isinstance(item["expr"], str) and item["expr"].strip()


def test_prometheusrule_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": manifests()["PrometheusRule"]["spec"]["groups"]}))
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_in_manifests_matches_the_version() -> None:
    from kmem_exporter import __version__

    for container in containers().values():
        assert re.fullmatch(rf"kmem-exporter:{re.escape(__version__)}", container["image"])
