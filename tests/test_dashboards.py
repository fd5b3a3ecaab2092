"""The Grafana dashboards: rendered from the mixin (mixin/render.py) and checked in current, and a JSON model that
Grafana accepts: known panel types, a grid without overlaps, described panels with units and targets that query the
`datasource` variable, defined variables, unique uids. The queries are checked for syntax with promtool here and
run against a real Prometheus in test_e2e.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from conftest import PROJECT, require_tool

sys.path.insert(0, str(PROJECT / "mixin"))
import render  # noqa: E402

DASHBOARDS = PROJECT / "dashboards"
FILES = sorted(DASHBOARDS.glob("*.json"))
PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "heatmap", "table", "text", "barchart",
               "state-timeline", "piechart"}
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's own variables; __data and __value are the row and cell a table's data link is on.
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__name__", "__data", "__value"}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(board):
        for query in panel.get("targets", []):
            yield panel["title"], query["expr"]


def test_the_four_dashboards_exist() -> None:
    assert [p.name for p in FILES] == ["fleet.json", "fragmentation.json", "memcg.json", "slab-conntrack.json"]


def test_checked_in_json_is_what_the_mixin_renders() -> None:
    rendered = {path.name: text for path, text in render.render().items() if path.parent.name == "dashboards"}
    assert sorted(rendered) == [p.name for p in FILES]
    for name, text in rendered.items():
        assert (DASHBOARDS / name).read_text() == text, f"{name} is stale: run `make mixin`"


def test_uids_are_unique_and_stable() -> None:
    uids = {p.name: load(p)["uid"] for p in FILES}
    assert uids == {"fleet.json": "kmem-fleet", "fragmentation.json": "kmem-fragmentation", "memcg.json": "kmem-memcg",
                    "slab-conntrack.json": "kmem-slab-conntrack"}
    titles = [load(p)["title"] for p in FILES]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_model(path: Path) -> None:
    board = load(path)
    assert board["schemaVersion"] == 39
    assert board.get("id") is None, "an exported id would clash on import"
    assert board["title"] and board["description"] and "kmem-exporter" in board["tags"]
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_grid_positions_fit_24_columns_without_overlap(path: Path) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in panels(load(path)):
        pos = panel["gridPos"]
        assert set(pos) == {"h", "w", "x", "y"}
        assert pos["x"] >= 0 and pos["y"] >= 0 and pos["w"] >= 1 and pos["h"] >= 1
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            assert (pos["x"], pos["w"], pos["h"]) == (0, 24, 1)
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_panel_is_described_has_a_unit_and_queries_the_datasource_variable(path: Path) -> None:
    for panel in panels(load(path)):
        assert panel["type"] in PANEL_TYPES, panel["type"]
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert len(panel.get("description", "")) > 60, f"{title}: say what the reader sees and what is bad"
        assert panel["datasource"] == DATASOURCE_REF, title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        targets = panel["targets"]
        assert targets, title
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), title
        for query in targets:
            assert query["datasource"] == DATASOURCE_REF, title
            assert query["expr"].strip() and "kmem_" in query["expr"], title


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_hard_coded_datasource(path: Path) -> None:
    def walk(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            if "datasource" in node:
                yield node["datasource"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for ref in walk(load(path)):
        assert ref in (DATASOURCE_REF, {"type": "grafana", "uid": "-- Grafana --"}), ref


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_variables_are_defined_and_used_ones_only(path: Path) -> None:
    board = load(path)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["type"] == "query"
    if path.name != "fleet.json":
        assert variables["instance"]["type"] == "query"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE_REF
            assert variable["query"]["query"].startswith("label_values(")
    text = json.dumps(board["panels"]) + json.dumps([v.get("query") for v in variables.values()])
    used = set(re.findall(r"\$\{?(\w+)", text)) - BUILTIN_VARIABLES
    assert used - set(variables) == set(), "undefined variables"
    assert set(variables) - used == set(), "variables no query uses"


def assert_queries_parse(boards: dict[str, dict[str, Any]], filled: dict[str, str], tmp_path: Path) -> None:
    """promtool checks each query of the boards (by name) as a recording rule's expression, variables filled."""
    rules = []
    for name, board in boards.items():
        for number, (_, expr) in enumerate(queries(board)):
            for variable, value in filled.items():
                expr = expr.replace(variable, value)
            rules.append({"record": f"dashboard:{name.split('.')[0].replace('-', '_')}:{number}", "expr": expr})
    rule_file = tmp_path / "queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([require_tool("promtool"), "check", "rules", str(rule_file)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_queries_parse(tmp_path: Path) -> None:
    """promtool checks each query as a recording rule's expression (variables filled in as in test_e2e.py)."""
    filled = {"$__rate_interval": "1m", "$instance": "host:9792", "$job": "kmem", "$node": ".*", "$zone": ".*",
              "$order": "6"}
    assert_queries_parse({path.name: load(path) for path in FILES}, filled, tmp_path)


def test_time_until_memcg_ids_run_out_on_growing_flat_full_and_falling_counts(tmp_path: Path) -> None:
    """promtool evaluates the panel's own query on four hosts: IDs in use growing by one a second, flat below the
    limit, flat at the limit, and falling. Flat and falling show the 1-year cap, a full host 0 (not NaN)."""
    board = load(DASHBOARDS / "memcg.json")
    [expr] = [e for title, e in queries(board) if title == "Time until IDs run out"]
    counts = {"growing": "10000+60x400", "flat": "60000x400", "full": "65535x400", "falling": "60000-10x400"}
    expected = {"growing": 65535 - (10000 + 60 * 360), "flat": 31536000, "full": 0, "falling": 31536000}
    series = []
    for host, values in counts.items():
        series.append({"series": f'kmem_memcg_ids_in_use{{instance="{host}",job="kmem-exporter"}}', "values": values})
        series.append({"series": f'kmem_memcg_id_limit{{instance="{host}",job="kmem-exporter"}}',
                       "values": "65535x400"})
    tests = [{
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [{
            "expr": f"round({expr.replace('$instance', host).replace('$job', 'kmem-exporter')})",
            "eval_time": "360m",
            "exp_samples": [{"labels": f'{{instance="{host}",job="kmem-exporter"}}', "value": value}],
        } for host, value in expected.items()],
    }]
    test_file = tmp_path / "time_left_test.yaml"
    test_file.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run([require_tool("promtool"), "test", "rules", str(test_file)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
