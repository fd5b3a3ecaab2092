"""The mixin on a simulated fleet in a real Prometheus: benchmarks/fleet_history.py writes 6 hours of a small fleet
(every kind of bad node, the rest healthy), promtool backfills it and the recording rules, and Prometheus serves it.
Every fleet and per-host panel query and every variable query returns data, and the alerts firing at the end are
exactly those the manifest expects of its bad nodes."""

from __future__ import annotations

import sys
from typing import Any, Iterator

import pytest

from conftest import PROJECT, require_tool

sys.path.insert(0, str(PROJECT / "benchmarks"))
import fleet_checks  # noqa: E402
import fleet_history  # noqa: E402
import fleet_prometheus  # noqa: E402

pytestmark = pytest.mark.e2e

NODES = 30
HOURS = 6.0
INTERVAL = 60


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[fleet_prometheus.FleetPrometheus, dict[str, Any]]]:
    require_tool("promtool")
    require_tool("prometheus")
    history = tmp_path_factory.mktemp("history")
    manifest = fleet_history.generate(history, NODES, HOURS, INTERVAL, seed=7)
    with fleet_prometheus.FleetPrometheus.backfilled(history, tmp_path_factory.mktemp("prometheus")) as server:
        yield server, manifest


def test_the_manifest_has_every_kind_of_bad_node(fleet: tuple[Any, dict[str, Any]]) -> None:
    _, manifest = fleet
    assert all(manifest["kinds"][kind] for kind in fleet_history.BAD_KINDS)
    assert len(manifest["kinds"]["healthy"]) == NODES - sum(len(manifest["kinds"][k]) for k in fleet_history.BAD_KINDS)
    assert manifest["end"] - manifest["start"] == HOURS * 3600


def test_every_fleet_panel_query_returns_data(fleet: tuple[Any, dict[str, Any]]) -> None:
    assert fleet_checks.empty_fleet_panels(*fleet) == []


def test_fleet_panels_find_the_bad_nodes(fleet: tuple[Any, dict[str, Any]]) -> None:
    """The risk table lists exactly the fragmenting nodes (order 4 fails there), the exporters-down table the down
    and collector-failing ones."""
    assert fleet_checks.misplaced_nodes(*fleet) == []


@pytest.mark.parametrize("name", fleet_checks.PER_HOST_DASHBOARDS)
def test_every_per_host_panel_query_returns_data(fleet: tuple[Any, dict[str, Any]], name: str) -> None:
    assert fleet_checks.empty_per_host_panels(*fleet, name) == []


@pytest.mark.parametrize("name", ["fleet.json", *fleet_checks.PER_HOST_DASHBOARDS])
def test_every_variable_query_returns_values(fleet: tuple[Any, dict[str, Any]], name: str) -> None:
    assert fleet_checks.empty_variables(*fleet, name) == []


def test_the_alerts_firing_at_the_end_are_exactly_the_manifests(fleet: tuple[Any, dict[str, Any]]) -> None:
    server, manifest = fleet
    assert fleet_checks.alert_mismatches(server, manifest) == []
    assert manifest["alerts"], "the manifest expects alerts: the check above compared something"


def test_the_checks_see_a_wrong_manifest(fleet: tuple[Any, dict[str, Any]]) -> None:
    """The checks can fail: a healthy node called fragmenting, and an alert that will not fire, are both reported."""
    server, manifest = fleet
    healthy = manifest["kinds"]["healthy"][0]
    wrong = {**manifest, "kinds": {**manifest["kinds"], "fragmenting": [*manifest["kinds"]["fragmenting"], healthy]},
             "alerts": [*manifest["alerts"], {"alertname": "KmemNoSuchAlert", "instance": healthy}]}
    assert any(healthy in problem for problem in fleet_checks.misplaced_nodes(server, wrong))
    assert any("KmemNoSuchAlert" in problem for problem in fleet_checks.alert_mismatches(server, wrong))
