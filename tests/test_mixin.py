"""The monitoring mixin (mixin/): the checked-in files are its current render, and a render with other settings
(another selector, the cluster label on, other thresholds and order) is valid, keeps clusters apart and passes a rule
test of its own. Every query of both renders carries the selector."""

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
from test_dashboards import assert_queries_parse

sys.path.insert(0, str(PROJECT / "mixin"))
import render  # noqa: E402

CUSTOM = {
    "kmemSelector": 'job="node-kmem"',
    "showMultiCluster": True,
    "clusterLabel": "k8s_cluster",
    "runbookURLPattern": "https://runbooks.example/kmem#%s",
    "memcgIdsHighRatio": 0.7,
    "memcgIdsHighFor": "10m",
    "fragmentationOrder": 4,
}
RAW_SELECTOR = re.compile(r"(?<![\w:])(kmem_[a-z0-9_]+|up)\{([^}]*)\}")
BARE_NAME = re.compile(r"(?<![\w:])kmem_[a-z0-9_]+(?![\w{])")
NAME_REGEX = re.compile(r'__name__=~"[^"]*"')
CLAUSE = re.compile(r"\b(?:by|on) \(([^)]*)\)")


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mixin rendered with CUSTOM into a directory of its own."""
    out = tmp_path_factory.mktemp("custom")
    result = subprocess.run([sys.executable, str(PROJECT / "mixin" / "render.py"), "--config", json.dumps(CUSTOM),
                             "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return out


def rules(root: Path) -> Iterator[dict[str, Any]]:
    for path in sorted((root / "alerts").glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def rule_queries(root: Path) -> Iterator[tuple[str, str]]:
    """(rule, query) of every rule expression and every query in an annotation template."""
    for rule in rules(root):
        name = rule.get("alert") or rule["record"]
        yield name, rule["expr"]
        for text in rule.get("annotations", {}).values():
            for query in re.findall(r"printf `([^`]*)`", text):
                yield name, query


def dashboard_queries(root: Path) -> Iterator[tuple[str, str]]:
    """(where, query) of every panel target and variable query."""
    for path in sorted((root / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name} / {panel['title']}", target["expr"]
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                yield f"{path.name} / ${variable['name']}", variable["query"]["query"]


def unselected(query: str, selector: str) -> list[str]:
    """The raw series selectors of query (kmem_* and up) that lack the selector, and bare metric names."""
    missing = [f"{name}{{{matchers}}}" for name, matchers in RAW_SELECTOR.findall(query) if selector not in matchers]
    missing += [m for m in re.findall(r"\{[^}]*__name__[^}]*\}", query) if selector not in m]
    return missing + BARE_NAME.findall(NAME_REGEX.sub("", query))


def test_checked_in_files_are_the_current_render() -> None:
    result = subprocess.run([sys.executable, str(PROJECT / "mixin" / "render.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    files = render.render()
    assert {p.parent.name for p in files} == {"alerts", "dashboards"}
    assert render.stale_files(files) == []


def test_check_notices_a_stale_file(tmp_path: Path) -> None:
    render_py = str(PROJECT / "mixin" / "render.py")
    subprocess.run([sys.executable, render_py, "--output", str(tmp_path)], check=True, capture_output=True,
                   timeout=120)
    assert subprocess.run([sys.executable, render_py, "--check", "--output", str(tmp_path)],
                          capture_output=True, timeout=120).returncode == 0
    memcg = tmp_path / "alerts" / "memcg.yaml"
    memcg.write_text(memcg.read_text().replace("> 0.8", "> 0.85"))
    result = subprocess.run([sys.executable, render_py, "--check", "--output", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "alerts/memcg.yaml" in result.stderr


def test_a_bad_config_is_refused() -> None:
    result = subprocess.run([sys.executable, str(PROJECT / "mixin" / "render.py"), "--config", "[1]"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--config" in result.stderr


@pytest.mark.parametrize("which", ["default", "custom"])
def test_every_query_carries_the_selector(which: str, custom: Path) -> None:
    root, selector = (PROJECT, 'job="kmem-exporter"') if which == "default" else (custom, str(CUSTOM["kmemSelector"]))
    queries = [*rule_queries(root), *dashboard_queries(root)]
    assert len(queries) > 80
    missing = {where: unselected(query, selector) for where, query in queries if unselected(query, selector)}
    assert missing == {}


def test_the_selector_check_finds_a_query_without_it() -> None:
    assert unselected('kmem_memcg_cgroups{job="a"} / kmem_memcg_id_limit', 'job="a"') == ["kmem_memcg_id_limit"]
    assert unselected('up{instance="x"} == 0', 'job="a"') == ['up{instance="x"}']
    assert unselected('rate({__name__=~"kmem_x_total"}[1m])', 'job="a"') == ['{__name__=~"kmem_x_total"}']


def test_custom_render_passes_promtool_check_rules(custom: Path) -> None:
    files = sorted(map(str, (custom / "alerts").glob("*.yaml")))
    result = subprocess.run([require_tool("promtool"), "check", "rules", *files], capture_output=True, text=True,
                            timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and output.count("SUCCESS") == len(files), output
    assert "WARNING" not in output.upper(), output


def test_custom_render_names_the_cluster_everywhere(custom: Path) -> None:
    cluster = CUSTOM["clusterLabel"]
    clauses = [(where, clause) for where, query in [*rule_queries(custom), *dashboard_queries(custom)]
               for clause in CLAUSE.findall(query) if clause.strip()]
    assert clauses and [(w, c) for w, c in clauses if cluster not in c] == []
    for rule in rules(custom):
        for text in rule.get("annotations", {}).values():
            if "$labels.instance" in text:
                assert f"$labels.{cluster}" in text, rule.get("alert")
    for path in sorted((custom / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[:3] == ["datasource", "cluster", "job"], path.name
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                assert f'{cluster}="$cluster"' in target["expr"], (path.name, panel["title"])


def test_custom_render_takes_the_thresholds(custom: Path) -> None:
    by_name = {rule.get("alert") or rule["record"]: rule for rule in rules(custom)}
    assert by_name["KmemMemcgIdsHigh"]["expr"].endswith("> 0.7") and by_name["KmemMemcgIdsHigh"]["for"] == "10m"
    assert by_name["kmem:fragmentation_alert_order"] == {
        "record": "kmem:fragmentation_alert_order", "expr": "vector(4)", "labels": {"order": "4"}}
    assert by_name["KmemMemcgIdsHigh"]["annotations"]["runbook_url"] == "https://runbooks.example/kmem#kmemmemcgidshigh"
    fleet = json.loads((custom / "dashboards" / "fleet.json").read_text())
    order = next(v for v in fleet["templating"]["list"] if v["name"] == "order")
    assert order["current"]["value"] == "4"


def test_custom_render_passes_a_rule_test_of_its_own(custom: Path) -> None:
    """Host n1 runs in two clusters. In east its memory cgroup IDs are 75% used (above the custom 70%) and its
    Normal zone has no order-4 block; in west it is healthy. A target of the default job, at 99%, is not selected.
    The alerts fire for east only, and their annotations read east's values."""
    east, west = 'instance="n1",job="node-kmem",k8s_cluster="east"', 'instance="n1",job="node-kmem",k8s_cluster="west"'
    series = {
        f"kmem_memcg_ids_in_use{{{east}}}": "49152x30", f"kmem_memcg_cgroups{{{east}}}": "49152x30",
        f"kmem_memcg_id_limit{{{east}}}": "65535x30", f"kmem_memcg_dying_cgroups{{{east}}}": "40000x30",
        f"kmem_memcg_ids_in_use{{{west}}}": "1000x30", f"kmem_memcg_cgroups{{{west}}}": "1000x30",
        f"kmem_memcg_id_limit{{{west}}}": "65535x30", f"kmem_memcg_dying_cgroups{{{west}}}": "10x30",
        'kmem_memcg_ids_in_use{instance="n2",job="kmem-exporter"}': "65000x30",
        'kmem_memcg_id_limit{instance="n2",job="kmem-exporter"}': "65535x30",
        f'kmem_buddy_largest_free_order{{{east},node="0",zone="Normal"}}': "3x30",
        f'kmem_extfrag_index{{{east},node="0",zone="Normal",order="4"}}': "0.9x30",
        f'kmem_buddy_largest_free_order{{{west},node="0",zone="Normal"}}': "9x30",
        f'kmem_extfrag_index{{{west},node="0",zone="Normal",order="4"}}': "-1x30",
    }
    labels = {"instance": "n1", "job": "node-kmem", "k8s_cluster": "east"}
    test = {
        "rule_files": [str(custom / "alerts" / "memcg.yaml"), str(custom / "alerts" / "fragmentation.yaml")],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": name, "values": values} for name, values in series.items()],
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": "KmemMemcgIdsHigh", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "KmemMemcgIdsHigh", "exp_alerts": [{
                    "exp_labels": {**labels, "severity": "warning"},
                    "exp_annotations": {
                        "summary": "75% of the memory cgroup IDs are in use on n1 in cluster east.",
                        "description": "49152 memory cgroup IDs are taken on n1 in cluster east, of a limit of "
                                       "65535 (the kernel holds 49152 memory cgroups, 40000 of them dying; dying ones "
                                       "hold an ID only on kernels before 4.7). When none is left, no new container "
                                       "or pod can start on this node.",
                        "runbook_url": "https://runbooks.example/kmem#kmemmemcgidshigh",
                    }}]},
                {"eval_time": "20m", "alertname": "KmemHighOrderFragmentation", "exp_alerts": [{
                    "exp_labels": {**labels, "severity": "warning", "node": "0", "zone": "Normal", "order": "4"},
                    "exp_annotations": {
                        "summary": "No free order-4 block in zone Normal (node 0) of n1 in cluster east: memory is "
                                   "fragmented.",
                        "description": "The largest free block in zone Normal of NUMA node 0 on n1 in cluster east is "
                                       "of order 3, so an order-4 allocation (a block of 2^4 contiguous pages) must "
                                       "wait for compaction and may fail. The extfrag index at order 4 is 0.900, "
                                       "above vm.extfrag_threshold (not exported: the default, 500 thousandths): the "
                                       "allocation fails because free memory is fragmented, not because it is short.",
                        "runbook_url": "https://runbooks.example/kmem#kmemhighorderfragmentation",
                    }}]},
            ],
        }],
    }
    path = custom / "custom_test.yaml"
    path.write_text(yaml.safe_dump(test))
    result = subprocess.run([require_tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("use_rules", [True, False])
def test_custom_dashboard_queries_parse(tmp_path: Path, use_rules: bool) -> None:
    """promtool parses every dashboard query of the multi-cluster render, reading the fleet rules or not."""
    boards = render.evaluate({**CUSTOM, "fleetUseRecordingRules": use_rules})["dashboards"]
    filled = {"$__rate_interval": "1m", "$instance": "n1", "$node": ".*", "$zone": ".*", "$order": "4",
              "$job": "node-kmem", "$cluster": "east"}
    assert_queries_parse(boards, filled, tmp_path)
