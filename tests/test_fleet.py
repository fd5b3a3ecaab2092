"""The mixin on a simulated fleet in a real Prometheus: benchmarks/fleet_history.py writes 6 hours of a small fleet
(every kind of bad node, the rest healthy), promtool backfills it and the recording rules, and Prometheus serves it.
Every fleet and per-host panel query and every variable query returns data, and the alerts firing at the end are
exactly those the manifest expects of its bad nodes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import PROJECT, require_tool

sys.path.insert(0, str(PROJECT / "benchmarks"))
import fleet_history  # noqa: E402
import fleet_prometheus  # noqa: E402

pytestmark = pytest.mark.e2e

NODES = 30
HOURS = 6.0
INTERVAL = 60
DASHBOARDS = PROJECT / "dashboards"
# Grafana's $__rate_interval at a 60 s scrape interval: four intervals.
FILLED = {"$__rate_interval": "4m", "$job": "kmem-exporter", "$node": ".*", "$zone": ".*", "$order": "4"}
# The per-host dashboards are checked on a healthy modern host and a RHEL 7 (3.10) one.
PER_HOST_KINDS = ["healthy", "memcg-leak"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[fleet_prometheus.FleetPrometheus, dict[str, Any]]]:
    require_tool("promtool")
    require_tool("prometheus")
    history = tmp_path_factory.mktemp("history")
    manifest = fleet_history.generate(history, NODES, HOURS, INTERVAL, seed=7)
    with fleet_prometheus.FleetPrometheus.backfilled(history, tmp_path_factory.mktemp("prometheus")) as server:
        yield server, manifest


def board(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text())


def panel_targets(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in board(name)["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target


def fill(expr: str, instance: str = "") -> str:
    for variable, value in FILLED.items():
        expr = expr.replace(variable, value)
    return expr.replace("$instance", instance)


def returns_data(server: fleet_prometheus.FleetPrometheus, manifest: dict[str, Any], target: dict[str, Any],
                 instance: str = "") -> bool:
    expr = fill(target["expr"], instance)
    if target.get("instant"):
        return bool(server.query(expr, manifest["end"]))
    return bool(server.query_range(expr, manifest["start"], manifest["end"], 300))


def test_the_manifest_has_every_kind_of_bad_node(fleet: tuple[Any, dict[str, Any]]) -> None:
    _, manifest = fleet
    assert all(manifest["kinds"][kind] for kind in fleet_history.BAD_KINDS)
    assert len(manifest["kinds"]["healthy"]) == NODES - sum(len(manifest["kinds"][k]) for k in fleet_history.BAD_KINDS)
    assert manifest["end"] - manifest["start"] == HOURS * 3600


def test_every_fleet_panel_query_returns_data(fleet: tuple[Any, dict[str, Any]]) -> None:
    server, manifest = fleet
    empty = [f"{title} / {target['refId']}" for title, target in panel_targets("fleet.json")
             if not returns_data(server, manifest, target)]
    assert empty == []


def test_fleet_panels_find_the_bad_nodes(fleet: tuple[Any, dict[str, Any]]) -> None:
    """The risk table lists exactly the fragmenting nodes (order 4 fails there), the exporters-down table the down
    and collector-failing ones."""
    server, manifest = fleet
    targets = dict(((title, t["refId"]), t) for title, t in panel_targets("fleet.json"))
    risk = server.query(fill(targets[("Nodes at risk: no free order-$order block, by extfrag index", "A")]["expr"]),
                        manifest["end"])
    assert {r["metric"]["instance"] for r in risk} == set(manifest["kinds"]["fragmenting"])
    health = "Exporters down or with failing collectors"
    down = server.query(fill(targets[(health, "A")]["expr"]), manifest["end"])
    failing = server.query(fill(targets[(health, "B")]["expr"]), manifest["end"])
    assert {r["metric"]["instance"] for r in down} == set(manifest["kinds"]["exporter-down"])
    assert {r["metric"]["instance"] for r in failing} == set(manifest["kinds"]["collector-failing"])


@pytest.mark.parametrize("name", ["fragmentation.json", "memcg.json", "slab-conntrack.json"])
def test_every_per_host_panel_query_returns_data(fleet: tuple[Any, dict[str, Any]], name: str) -> None:
    server, manifest = fleet
    empty = []
    for host in [manifest["kinds"][kind][0] for kind in PER_HOST_KINDS]:
        for panel in board(name)["panels"]:
            targets = panel.get("targets", [])
            # A panel shows data when one of its queries does (allocstall has one counter per kernel generation).
            if targets and not any(returns_data(server, manifest, target, host) for target in targets):
                empty.append(f"{host}: {panel['title']}")
    assert empty == []


@pytest.mark.parametrize("name", ["fleet.json", "fragmentation.json", "memcg.json", "slab-conntrack.json"])
def test_every_variable_query_returns_values(fleet: tuple[Any, dict[str, Any]], name: str) -> None:
    server, manifest = fleet
    healthy = manifest["kinds"]["healthy"][0]
    for variable in board(name)["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"]
        assert query.startswith("label_values(") and query.endswith(")")
        selector, label = fill(query[len("label_values("):-1], healthy).rsplit(",", 1)
        values = server.label_values(selector, label.strip(), manifest["start"], manifest["end"])
        assert values, f"{name} / {variable['name']}"
        if variable["name"] == "instance":
            assert len(values) == NODES


def test_the_alerts_firing_at_the_end_are_exactly_the_manifests(fleet: tuple[Any, dict[str, Any]]) -> None:
    server, manifest = fleet
    firing = {json.dumps({k: v for k, v in alert.items() if k not in ("job", "severity")}, sort_keys=True)
              for alert in server.firing(manifest["end"], INTERVAL)}
    expected = {json.dumps(alert, sort_keys=True) for alert in manifest["alerts"]}
    assert firing - expected == set(), "alerts firing that the manifest does not expect"
    assert expected - firing == set(), "alerts the manifest expects that do not fire"
    assert {json.loads(a)["instance"] for a in firing} == {
        n for kind, nodes in manifest["kinds"].items() if kind not in ("healthy", "past-allocation-failures")
        for n in nodes}
