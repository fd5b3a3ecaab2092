"""What a simulated fleet in a real Prometheus must show, whatever its size: each check returns what is wrong (an
empty list when all is right). tests/test_fleet.py runs them on a small fleet, benchmarks/fleet_queries.py on the
1,000-node one.

- every query of the fleet dashboard returns data; its risk table lists exactly the fragmenting nodes and its
  exporter-health table exactly the down and the collector-failing ones;
- every query of the per-host dashboards returns data on a healthy modern host and on a RHEL 7 (3.10) one;
- every dashboard variable query returns values (the `instance` one: every node);
- the alerts firing at the end are exactly those the manifest expects of its bad nodes.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import fleet_history
from fleet_prometheus import FleetPrometheus

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
PER_HOST_DASHBOARDS = ("fragmentation.json", "memcg.json", "slab-conntrack.json")
# The per-host dashboards are checked on a healthy modern host and a RHEL 7 (3.10) one.
PER_HOST_KINDS = ("healthy", "memcg-leak")
RISK_PANEL = "Nodes at risk: no free order-$order block, by extfrag index"
HEALTH_PANEL = "Exporters down or with failing collectors"

Manifest = dict[str, Any]


def board(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text())  # type: ignore[no-any-return]


def panel_targets(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in board(name)["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target


def fill(expr: str, manifest: Manifest, instance: str = "") -> str:
    """A dashboard query with its variables set: Grafana's $__rate_interval at the history's scrape interval (four
    intervals), the exporter's job, every node and zone, order 4, and `instance`."""
    values = {"$__rate_interval": f"{4 * manifest['interval']}s", "$job": fleet_history.JOB, "$node": ".*",
              "$zone": ".*", "$order": "4", "$instance": instance}
    for variable, value in values.items():
        expr = expr.replace(variable, value)
    return expr


def returns_data(server: FleetPrometheus, manifest: Manifest, target: dict[str, Any], instance: str = "") -> bool:
    expr = fill(target["expr"], manifest, instance)
    if target.get("instant"):
        return bool(server.query(expr, manifest["end"]))
    return bool(server.query_range(expr, manifest["start"], manifest["end"], 300))


def empty_fleet_panels(server: FleetPrometheus, manifest: Manifest) -> list[str]:
    return [f"{title} / {target['refId']}" for title, target in panel_targets("fleet.json")
            if not returns_data(server, manifest, target)]


def misplaced_nodes(server: FleetPrometheus, manifest: Manifest) -> list[str]:
    """The fleet tables' nodes that are not the manifest's, and the manifest's that they miss."""
    targets = {(title, t["refId"]): t for title, t in panel_targets("fleet.json")}

    def instances(panel: str, ref: str) -> set[str]:
        found = server.query(fill(targets[(panel, ref)]["expr"], manifest), manifest["end"])
        return {r["metric"]["instance"] for r in found}

    wrong = []
    for panel, ref, kind in ((RISK_PANEL, "A", "fragmenting"), (HEALTH_PANEL, "A", "exporter-down"),
                             (HEALTH_PANEL, "B", "collector-failing")):
        shown, expected = instances(panel, ref), set(manifest["kinds"][kind])
        wrong += [f"{panel} / {ref}: {node} shown, not {kind}" for node in sorted(shown - expected)]
        wrong += [f"{panel} / {ref}: {node} ({kind}) not shown" for node in sorted(expected - shown)]
    return wrong


def empty_per_host_panels(server: FleetPrometheus, manifest: Manifest, name: str) -> list[str]:
    empty = []
    for host in [manifest["kinds"][kind][0] for kind in PER_HOST_KINDS]:
        for panel in board(name)["panels"]:
            targets = panel.get("targets", [])
            # A panel shows data when one of its queries does (allocstall has one counter per kernel generation).
            if targets and not any(returns_data(server, manifest, target, host) for target in targets):
                empty.append(f"{name} on {host}: {panel['title']}")
    return empty


def empty_variables(server: FleetPrometheus, manifest: Manifest, name: str) -> list[str]:
    healthy = manifest["kinds"]["healthy"][0]
    wrong = []
    for variable in board(name)["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"]
        if not (query.startswith("label_values(") and query.endswith(")")):
            wrong.append(f"{name} / {variable['name']}: not a label_values() query: {query}")
            continue
        selector, label = fill(query[len("label_values("):-1], manifest, healthy).rsplit(",", 1)
        values = server.label_values(selector, label.strip(), manifest["start"], manifest["end"])
        if not values:
            wrong.append(f"{name} / {variable['name']}: no values")
        elif variable["name"] == "instance" and len(values) != manifest["nodes"]:
            wrong.append(f"{name} / instance: {len(values)} values for {manifest['nodes']} nodes")
    return wrong


def alert_mismatches(server: FleetPrometheus, manifest: Manifest) -> list[str]:
    """Alerts firing at the end that the manifest does not expect, expected ones that do not fire, and bad nodes
    (but those whose failures are past) without an alert."""
    firing = {json.dumps({k: v for k, v in alert.items() if k not in ("job", "severity")}, sort_keys=True)
              for alert in server.firing(manifest["end"], manifest["interval"])}
    expected = {json.dumps(alert, sort_keys=True) for alert in manifest["alerts"]}
    wrong = [f"unexpected: {alert}" for alert in sorted(firing - expected)]
    wrong += [f"not firing: {alert}" for alert in sorted(expected - firing)]
    alerted = {json.loads(alert)["instance"] for alert in firing}
    bad = {node for kind, nodes in manifest["kinds"].items() if kind not in ("healthy", "past-allocation-failures")
           for node in nodes}
    wrong += [f"bad node without an alert: {node}" for node in sorted(bad - alerted)]
    wrong += [f"alert on a node that is not bad: {node}" for node in sorted(alerted - bad)]
    return wrong


def all_checks(server: FleetPrometheus, manifest: Manifest) -> Iterator[tuple[str, Callable[[], list[str]]]]:
    """Every check, named, ready to run."""
    yield "fleet panels return data", partial(empty_fleet_panels, server, manifest)
    yield "fleet tables list exactly the bad nodes", partial(misplaced_nodes, server, manifest)
    for name in PER_HOST_DASHBOARDS:
        yield f"{name} panels return data", partial(empty_per_host_panels, server, manifest, name)
    for name in ("fleet.json", *PER_HOST_DASHBOARDS):
        yield f"{name} variables return values", partial(empty_variables, server, manifest, name)
    yield "alerts firing are exactly the manifest's", partial(alert_mismatches, server, manifest)
