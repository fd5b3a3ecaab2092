"""deploy/kubernetes: the base and its components, rendered by the real `kubectl kustomize` in every combination
and validated (Kubernetes' schemas for the built-in objects, the Prometheus Operator's CRD types for its objects);
flags and mounts against what the exporter reads; the Prometheus Operator objects; the generated PrometheusRule and
dashboard ConfigMaps kept in step with alerts/ and dashboards/."""

from __future__ import annotations

import copy
import functools
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

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
BASE = KUBERNETES / "base"
COMPONENTS = sorted(p.name for p in (KUBERNETES / "components").iterdir() if (p / "kustomization.yaml").exists())
COMBINATIONS = [c for n in range(len(COMPONENTS) + 1) for c in itertools.combinations(COMPONENTS, n)]
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
CRD_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
NAMESPACE = "monitoring"

sys.path.insert(0, str(KUBERNETES))
import generate_dashboards  # noqa: E402
import generate_prometheusrule  # noqa: E402


def kustomize(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize` renders from `directory`."""
    result = subprocess.run([require_tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def by_id(objects: list[dict]) -> dict[tuple[str, str], dict]:
    ids = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert len(ids) == len(objects), "two objects of the same kind and name"
    return ids


@functools.lru_cache(maxsize=None)
def _rendering(directory: Path) -> str:
    return json.dumps(kustomize(directory))


def base() -> dict[tuple[str, str], dict]:
    """deploy/kubernetes/base alone, by kind and name (a fresh copy)."""
    return by_id(json.loads(_rendering(BASE)))


def rendered() -> dict[tuple[str, str], dict]:
    """deploy/kubernetes as `kubectl apply -k deploy/kubernetes` applies it, by kind and name (a fresh copy)."""
    return by_id(json.loads(_rendering(KUBERNETES)))


def one(kind: str) -> dict:
    (obj,) = [o for (k, _), o in rendered().items() if k == kind]
    return obj


def daemonsets() -> list[dict]:
    return [o for (kind, _), o in rendered().items() if kind == "DaemonSet"]


def containers() -> dict[str, dict]:
    return {c["name"]: c for d in daemonsets() for c in d["spec"]["template"]["spec"]["containers"]}


def pod_of(container_name: str) -> dict:
    """The pod template (metadata and spec) whose containers include `container_name`."""
    (template,) = [d["spec"]["template"] for d in daemonsets()
                   if container_name in {c["name"] for c in d["spec"]["template"]["spec"]["containers"]}]
    return template


def container_mounts(container: dict) -> list[Mount]:
    volumes = {v["name"]: v for v in pod_of(container["name"])["spec"]["volumes"]}
    mounts = []
    for mount in container["volumeMounts"]:
        host = volumes[mount["name"]]["hostPath"]["path"]
        mounts.append(Mount(PurePosixPath(host), PurePosixPath(mount["mountPath"]), mount.get("readOnly", False)))
    return mounts


def container_config(container: dict) -> Config:
    assert container["args"][0] == "serve"
    return parse_container_args(container["args"][1:])


def documented_privileges() -> dict:
    return privileges_table((PROJECT / "docs" / "deployment.md").read_text())


def component_ids(name: str) -> set[tuple[str, str]]:
    """The objects a component's own resource files declare."""
    directory = KUBERNETES / "components" / name
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    return {(d["kind"], d["metadata"]["name"]) for file in kustomization["resources"]
            for d in yaml.safe_load_all((directory / file).read_text()) if d}


def render_combination(components: tuple[str, ...], tmp_path: Path) -> list[dict]:
    """The base with `components`, composed as a user's own overlay would (relative paths, nothing else set)."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    relative = os.path.relpath(KUBERNETES, overlay)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [f"{relative}/base"], "components": [f"{relative}/components/{c}" for c in components]}))
    return kustomize(overlay)


_validated: set[str] = set()


def validate(obj: dict) -> None:
    """Kubernetes' schemas (strict, both versions) for a built-in object, the operator's types for its objects;
    each distinct object is checked once."""
    key = json.dumps(obj, sort_keys=True)
    if key in _validated:
        return
    if obj["kind"] in CRD_KINDS:
        validate_crd_object(obj)
    else:
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)  # raises ValidationError
    _validated.add(key)


def test_the_default_composition_is_the_base_with_the_listed_components() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["base"]
    listed = [c.removeprefix("components/") for c in kustomization["components"]]
    assert set(listed) <= set(COMPONENTS)
    expected = {(kind, name) for kind, name in base()}.union(*(component_ids(c) for c in listed))
    assert set(rendered()) == expected
    assert "servicemonitor" not in listed or "podmonitor" not in listed, "each target would be scraped twice"


def test_every_component_is_described_in_the_default_kustomization() -> None:
    text = (KUBERNETES / "kustomization.yaml").read_text()
    for name in COMPONENTS:
        assert re.search(rf"^#\s+{name}\s", text, re.M), f"{name} is not described"
        assert re.search(rf"^\s*(# )?- components/{name}$", text, re.M), f"{name} cannot be switched on there"


@pytest.mark.parametrize("components", COMBINATIONS, ids=lambda c: "+".join(c) or "base")
def test_every_combination_renders_and_validates(components: tuple[str, ...], tmp_path: Path) -> None:
    """Every set of components renders on the unchanged base with exactly their objects added, all in the base's
    namespace, on the base's image, each valid."""
    objects = by_id(render_combination(components, tmp_path))
    alone = base()
    assert set(objects) == set(alone).union(*(component_ids(c) for c in components))
    for key, obj in alone.items():
        assert objects[key] == obj, f"{key} differs from the base's"
    (image,) = {c["image"] for (kind, _), o in objects.items() if kind == "DaemonSet"
                for c in o["spec"]["template"]["spec"]["containers"]}
    assert image == alone[("DaemonSet", "kmem-exporter")]["spec"]["template"]["spec"]["containers"][0]["image"]
    for obj in objects.values():
        assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kmem-exporter"
        validate(obj)


def test_the_release_label_is_set_in_one_place() -> None:
    """kube-prometheus-stack's selectors want `release`: one line of deploy/kubernetes/kustomization.yaml sets it
    on every object, the monitors and rules included."""
    files = [p for p in KUBERNETES.rglob("*.yaml") if re.search(r"^\s*release:", p.read_text(), re.M)]
    assert files == [KUBERNETES / "kustomization.yaml"]
    release = yaml.safe_load(files[0].read_text())["labels"][0]["pairs"]["release"]
    assert {o["metadata"]["labels"]["release"] for o in rendered().values()} == {release}


def test_every_default_collector_runs_in_exactly_one_container_of_the_default_composition() -> None:
    enabled = [name for container in containers().values() for name in container_config(container).enabled_collectors]
    assert sorted(enabled) == sorted(name for name, cls in COLLECTORS.items() if cls.default_enabled)


def test_the_base_alone_runs_no_privileged_container() -> None:
    for (kind, _), obj in base().items():
        if kind == "DaemonSet":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                assert container["securityContext"]["privileged"] is False
                assert "kernel_log" not in container_config(container).enabled_collectors


def test_the_validation_catches_a_broken_daemonset() -> None:
    """The schema check is real: a misspelt field and a wrong type are refused."""
    broken = rendered()[("DaemonSet", "kmem-exporter")]
    broken["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    broken = rendered()[("DaemonSet", "kmem-exporter")]
    broken["spec"]["template"]["spec"]["hostNetwork"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def crd_model(kind: str) -> type[pydantic.BaseModel]:
    """The Prometheus Operator's own type for `kind`: PyPI's cloudcoil.models.prometheus_operator, generated from
    the operator's CRD schemas (required fields, enums, patterns, types)."""
    models: dict[str, type[pydantic.BaseModel]] = {
        "PodMonitor": prometheus_operator.PodMonitor, "ServiceMonitor": prometheus_operator.ServiceMonitor,
        "PrometheusRule": prometheus_operator.PrometheusRule}
    return models[kind]


def validate_crd_object(obj: dict) -> None:
    """Raises pydantic.ValidationError on a wrong value; fails on a field the schema does not know (the model
    ignores it, as the API server prunes it, so the object would not come back as written)."""
    model = crd_model(obj["kind"]).model_validate(obj)
    assert model.model_dump(mode="json", by_alias=True, exclude_unset=True) == obj, "a field the CRD does not know"


def test_the_crd_validation_catches_broken_operator_objects() -> None:
    broken = copy.deepcopy(one("PodMonitor"))
    broken["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["action"] = "rename"
    with pytest.raises(pydantic.ValidationError):
        validate_crd_object(broken)
    broken = copy.deepcopy(one("PodMonitor"))
    broken["spec"]["podMetricsEndpoints"][0]["portName"] = broken["spec"]["podMetricsEndpoints"][0].pop("port")
    with pytest.raises(AssertionError, match="a field the CRD does not know"):
        validate_crd_object(broken)
    broken = copy.deepcopy(one("PrometheusRule"))
    broken["spec"]["groups"][0]["rules"][-1]["for"] = "a while"
    with pytest.raises(pydantic.ValidationError):
        validate_crd_object(broken)


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
    for daemonset in daemonsets():
        for volume in daemonset["spec"]["template"]["spec"]["volumes"]:
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
    # The Service's one port reaches each pod's port by its name.
    service = one("Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [declared["name"]]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod_of(name)["metadata"]["labels"].items()


def test_ports_differ_on_the_host_network() -> None:
    ports = [container_config(c).listen_host_port[1] for c in containers().values()]
    assert len(set(ports)) == len(ports)


def test_runs_on_every_node() -> None:
    for daemonset in daemonsets():
        pod = daemonset["spec"]["template"]["spec"]
        assert {"operator": "Exists"} in pod["tolerations"]
        assert pod["hostNetwork"] is True  # conntrack counts are per network namespace: the host's is wanted


@pytest.mark.parametrize("name", ["kmem-exporter", "kernel-log"])
def test_security_context_grants_what_the_docs_say_the_collectors_need(name: str) -> None:
    """An unprivileged container drops everything and adds exactly the capabilities its collectors need according
    to the Privileges table (docs/deployment.md); only collectors whose row says they need a privileged container
    run in one."""
    container = containers()[name]
    context = container["securityContext"]
    enabled = container_config(container).enabled_collectors
    table = documented_privileges()
    assert set(enabled) <= set(table), "a collector without a row in the Privileges table (docs/deployment.md)"
    assert context["readOnlyRootFilesystem"] is True
    if context.get("privileged"):
        assert all("privileged container" in table[c].needs for c in enabled), enabled
        return
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    needed = set().union(*(table[c].capabilities for c in enabled))
    assert {f"CAP_{c}" for c in context["capabilities"]["add"]} == needed


def test_no_api_access() -> None:
    assert one("ServiceAccount")["automountServiceAccountToken"] is False
    for daemonset in daemonsets():
        assert daemonset["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


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


def check_scrape_endpoint(endpoint: dict) -> None:
    """A monitor's endpoint: the exporter's path, a timeout above the collectors', the node name in `instance`."""
    for container in containers().values():
        config = container_config(container)
        assert endpoint["path"] == config.telemetry_path
        # The scrape must not time out before the exporter's own collector timeout does.
        assert float(endpoint["scrapeTimeout"].rstrip("s")) > config.collector_timeout
    # `node` is the exporter's NUMA node label: the Kubernetes node name must go elsewhere.
    targets = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    assert "node" not in targets
    assert targets["instance"]["sourceLabels"] == ["__meta_kubernetes_pod_node_name"]


def test_podmonitor_scrapes_every_pod_and_keeps_the_node_label() -> None:
    monitor = one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for container in containers().values():
        pod_labels = pod_of(container["name"])["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert [p["name"] for p in container["ports"]] == [endpoint["port"]]
    check_scrape_endpoint(endpoint)


def test_servicemonitor_scrapes_the_service_and_keeps_the_node_label() -> None:
    monitor = yaml.safe_load((KUBERNETES / "components" / "servicemonitor" / "servicemonitor.yaml").read_text())
    service = one("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    check_scrape_endpoint(endpoint)


def test_networkpolicy_admits_prometheus_to_every_pod_and_nothing_out() -> None:
    policy = yaml.safe_load((KUBERNETES / "components" / "networkpolicy" / "networkpolicy.yaml").read_text())
    for container in containers().values():
        pod_labels = pod_of(container["name"])["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        (rule,) = policy["spec"]["ingress"]
        assert [p["port"] for p in rule["ports"]] == [p["name"] for p in container["ports"]]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and policy["spec"]["egress"] == []


def test_dashboard_configmaps_hold_every_dashboard_for_grafanas_sidecar() -> None:
    maps = {name: o for (kind, name), o in rendered().items() if kind == "ConfigMap"}
    files = sorted((PROJECT / "dashboards").glob("*.json"))
    assert len(files) == len(maps) >= 1
    data = {}
    for configmap in maps.values():
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        data.update(configmap["data"])
    assert data == {path.name: path.read_text() for path in files}
    assert all(len(json.dumps(m)) < 256 * 1024 for m in maps.values()), "too big for kubectl apply's annotation"


@pytest.mark.parametrize("generator", [generate_dashboards, generate_prometheusrule], ids=lambda g: g.__name__)
def test_checked_in_files_equal_the_generated_ones(generator: Any) -> None:
    """prometheusrule.yaml and dashboards.yaml are what their generators make, in the file and by `--check`."""
    assert generator.OUTPUT.read_text() == generator.render(), f"run `make`, see {generator.__name__}.py"
    script = str(KUBERNETES / f"{generator.__name__}.py")
    result = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_dashboard_configmaps_follow_the_json_files(tmp_path: Path) -> None:
    dashboards = tmp_path / "dashboards"
    dashboards.mkdir()
    (dashboards / "x.json").write_text("{}\n")
    assert "kmem-exporter-dashboard-x" in generate_dashboards.render(dashboards)
    assert generate_dashboards.render(dashboards) != generate_dashboards.OUTPUT.read_text()


def test_prometheusrule_holds_every_group_of_alerts() -> None:
    rule = one("PrometheusRule")
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
    rules.write_text(yaml.safe_dump({"groups": one("PrometheusRule")["spec"]["groups"]}))
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generator_handles_missing_and_test_files(tmp_path: Path) -> None:
    """No alerts/ gives an empty rule; promtool test files are skipped; group names must be unique."""
    assert yaml.safe_load(generate_prometheusrule.render(tmp_path / "absent"))["spec"]["groups"] == []
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    (alerts / "a.yaml").write_text("groups:\n  - name: one\n    rules:\n      - record: x\n        expr: up\n")
    (alerts / "a_test.yaml").write_text("rule_files: [a.yaml]\ntests: []\n")
    assert [g["name"] for g in yaml.safe_load(generate_prometheusrule.render(alerts))["spec"]["groups"]] == ["one"]
    (alerts / "b.yaml").write_text("groups:\n  - name: one\n    rules: []\n")
    with pytest.raises(SystemExit, match="unique"):
        generate_prometheusrule.render(alerts)
