"""deploy/compose: the local stack's files, checked with the real promtool and amtool on the layout each container
sees (its volumes laid out in a temporary directory)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from conftest import PROJECT, require_tool
from deploy_paths import Mount, mismatches

from kmem_exporter.config import parse_args

COMPOSE_DIR = PROJECT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict:
    return compose()["services"][name]


def bind_mounts(name: str) -> list[tuple[Path, PurePosixPath, str]]:
    """(host source, container path, mode) of a service's bind mounts and devices; named volumes left out."""
    binds = []
    for entry in service(name).get("volumes", []) + service(name).get("devices", []):
        source, target, *mode = entry.split(":")
        if source.startswith((".", "/")):
            binds.append(((COMPOSE_DIR / source).resolve(), PurePosixPath(target), mode[0] if mode else "rw"))
    return binds


def lay_out(name: str, root: Path) -> Path:
    """The service's bind mounts (project files only) as symlinks under `root`, like the container sees them."""
    for source, target, _ in bind_mounts(name):
        if PROJECT in source.parents:
            link = root / target.relative_to("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
    return root


def flag(command: list[str], name: str) -> str:
    (value,) = [c.split("=", 1)[1] for c in command if c.startswith(f"--{name}=")]
    return value


def test_services_and_sources_exist() -> None:
    data = compose()
    assert set(data["services"]) == {"kmem-exporter", "prometheus", "alertmanager", "grafana"}
    for name, spec in data["services"].items():
        for source, target, _ in bind_mounts(name):
            assert source.exists(), f"{name}: volume source {source} does not exist"
        for entry in spec.get("volumes", []):
            source = entry.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in data["volumes"], f"{name}: named volume {source} is not declared"
    build = service("kmem-exporter")["build"]
    assert (COMPOSE_DIR / build["context"] / "Dockerfile").resolve() == PROJECT / "Dockerfile"


def test_exporter_flags_and_mounts_match_what_it_reads() -> None:
    spec = service("kmem-exporter")
    mounts = [Mount(PurePosixPath(str(source)), target, mode in ("ro", "r")) for source, target, mode in
              bind_mounts("kmem-exporter")]
    assert spec["command"][0] == "serve"
    assert mismatches(spec["command"][1:], mounts) == []
    assert spec["read_only"] is True and spec["cap_drop"] == ["ALL"]
    assert spec["network_mode"] == "host"  # conntrack figures are per network namespace: the host's is wanted


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """`promtool check config` on the config as the container sees it, so the bundled rule files are checked too."""
    promtool = require_tool("promtool")
    command = service("prometheus")["command"]
    root = lay_out("prometheus", tmp_path)
    config = root / flag(command, "config.file").lstrip("/")
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = sorted(p.name for p in (PROJECT / "alerts").glob("*.yaml")
                        if "groups" in (yaml.safe_load(p.read_text()) or {}))
    assert rule_files, "no rule files in alerts/"
    for name in rule_files:
        assert f"{name}" in result.stdout, f"promtool did not check the rule file {name}:\n{result.stdout}"


def test_prometheus_scrapes_the_exporter_and_alerts_the_alertmanager() -> None:
    config = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text())
    exporter_port = parse_args(service("kmem-exporter")["command"])[1].listen_host_port[1]
    targets = [t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]]
    assert f"localhost:{exporter_port}" in targets
    alertmanager_port = flag(service("alertmanager")["command"], "web.listen-address").rsplit(":", 1)[1]
    (alertmanager,) = config["alerting"]["alertmanagers"]
    assert alertmanager["static_configs"][0]["targets"] == [f"localhost:{alertmanager_port}"]


def test_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    amtool = require_tool("amtool")
    root = lay_out("alertmanager", tmp_path)
    config = root / flag(service("alertmanager")["command"], "config.file").lstrip("/")
    assert config.resolve() == PROJECT / "alerts" / "alertmanager.example.yml"
    result = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_amtool_refuses_a_broken_config(tmp_path: Path) -> None:
    """The check is real: a route to an undefined receiver is refused."""
    amtool = require_tool("amtool")
    broken = tmp_path / "alertmanager.yml"
    broken.write_text("route:\n  receiver: nowhere\nreceivers:\n  - name: somewhere\n")
    result = subprocess.run([amtool, "check-config", str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def grafana_provisioning(kind: str) -> list[dict]:
    directory = COMPOSE_DIR / "grafana" / "provisioning" / kind
    files = sorted(directory.glob("*.yaml"))
    assert files, f"no {kind} provisioning"
    return [yaml.safe_load(f.read_text()) for f in files]


def test_grafana_dashboards_provisioning_points_at_the_bundled_dashboards(tmp_path: Path) -> None:
    root = lay_out("grafana", tmp_path)
    providers = [p for doc in grafana_provisioning("dashboards") for p in doc["providers"]]
    assert providers
    for provider in providers:
        path = root / provider["options"]["path"].lstrip("/")
        assert path.resolve() == PROJECT / "dashboards", f"{provider['name']} reads {path}"
        dashboards = sorted(path.glob("*.json"))
        assert dashboards, "no dashboards/*.json to provision"
        uids = [json.loads(d.read_text()).get("uid") for d in dashboards]
        assert len(set(uids)) == len(uids), "dashboard uids must be unique"


def test_grafana_datasource_is_the_local_prometheus() -> None:
    (datasource,) = [d for doc in grafana_provisioning("datasources") for d in doc["datasources"]]
    port = flag(service("prometheus")["command"], "web.listen-address").rsplit(":", 1)[1]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == f"http://localhost:{port}"


def test_dashboards_use_the_provisioned_datasource_or_a_variable() -> None:
    """A panel's datasource is a template variable or the provisioned one; a uid from elsewhere shows no data."""
    (datasource,) = [d for doc in grafana_provisioning("datasources") for d in doc["datasources"]]
    for path in sorted((PROJECT / "dashboards").glob("*.json")):
        for ref in _datasource_refs(json.loads(path.read_text())):
            uid = ref.get("uid", "") if isinstance(ref, dict) else str(ref)
            assert uid.startswith("$") or uid in ("", datasource["uid"], "-- Grafana --", "grafana"), (path.name, ref)


def _datasource_refs(node: object) -> list[object]:
    refs = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and value is not None:
                refs.append(value)
            else:
                refs += _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            refs += _datasource_refs(item)
    return refs


@pytest.mark.parametrize("name", ["prometheus", "alertmanager", "grafana"])
def test_project_files_are_mounted_read_only(name: str) -> None:
    for source, target, mode in bind_mounts(name):
        assert mode == "ro", f"{name}: {target} is writable"
