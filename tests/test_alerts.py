"""The alert rules: promtool checks them and runs their unit tests, every alert is complete and both fires and
stays silent in those tests, its runbook exists, and the example Alertmanager config routes by severity."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT, require_tool
from markdown_links import github_anchors

ALERTS = PROJECT / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.yaml"))
UNIT_TESTS = sorted((ALERTS / "tests").glob("*.yaml"))
RUNBOOKS = PROJECT / "docs" / "runbooks.md"
DASHBOARDS_AND_ALERTS = PROJECT / "docs" / "dashboards-and-alerts.md"
AM_EXAMPLE = ALERTS / "alertmanager.example.yml"
SEVERITIES = {"critical", "warning", "info"}
# Alerts on kernel-log counters: the 15-minute increase window already holds them, so they fire at once.
IMMEDIATE = {"KmemPageAllocationFailure", "KmemSlabCacheCreationFailure", "KmemConntrackTableFull"}
# Where the runbooks are published: a placeholder (docs/dashboards-and-alerts.md says how to set it); one prefix
# for every alert, so that one substitution sets them all.
RUNBOOK_BASE = "https://kmem-exporter.invalid/docs/runbooks.md#"


def alert_rules() -> dict[str, dict]:
    rules: dict[str, dict] = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["alert"] not in rules, f"alert {rule['alert']} defined twice"
                    rules[rule["alert"]] = rule
    return rules


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=PROJECT)


def test_rule_files_exist() -> None:
    assert [p.name for p in RULE_FILES] == ["exporter.yaml", "fleet.yaml", "fragmentation.yaml", "memcg.yaml",
                                            "slab.yaml"]
    assert len(alert_rules()) >= 14


def test_promtool_check_rules_is_clean() -> None:
    result = run(require_tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("SUCCESS") == len(RULE_FILES), output
    assert "WARNING" not in output.upper(), output


def test_promtool_unit_tests_pass() -> None:
    result = run(require_tool("promtool"), "test", "rules", *map(str, UNIT_TESTS))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("SUCCESS") == len(UNIT_TESTS), output


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The harness notices a wrong expectation: the same test with one annotation changed fails."""
    original = (ALERTS / "tests" / "slab_test.yaml").read_text()
    broken = original.replace("is 95% full", "is 94% full")
    assert broken != original
    path = tmp_path / "broken_test.yaml"
    path.write_text(broken.replace("../slab.yaml", str(ALERTS / "slab.yaml")))
    result = run(require_tool("promtool"), "test", "rules", str(path))
    assert result.returncode != 0
    assert "94% full" in result.stdout + result.stderr


def test_unit_tests_cover_every_rule_file() -> None:
    covered = set()
    for path in UNIT_TESTS:
        for name in yaml.safe_load(path.read_text())["rule_files"]:
            covered.add((path.parent / name).resolve())
    assert covered == {p.resolve() for p in RULE_FILES}


def test_every_alert_both_fires_and_stays_silent_in_unit_tests() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    checked_annotations: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                (fires if expected else silent).add(check["alertname"])
                for alert in expected:
                    assert alert["exp_labels"].get("severity"), (path.name, check["alertname"])
                    if {"summary", "description", "runbook_url"} <= set(alert.get("exp_annotations", {})):
                        checked_annotations.add(check["alertname"])
    names = set(alert_rules())
    assert names - fires == set(), "alerts never seen firing"
    assert names - silent == set(), "alerts never seen staying silent"
    assert names - checked_annotations == set(), "alerts whose annotations are never checked"


@pytest.mark.parametrize("name", sorted(alert_rules()))
def test_alert_is_complete(name: str) -> None:
    rule = alert_rules()[name]
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    # The description carries the values that matter: a template, not a fixed sentence.
    assert "{{" in annotations["description"] and "$labels.instance" in annotations["description"]
    duration = rule.get("for", "0s")
    if name in IMMEDIATE:
        assert "[15m]" in rule["expr"] and "offset 15m" in rule["expr"]
    else:
        assert re.fullmatch(r"\d+[mh]", duration) and duration not in ("0m", "0h"), duration
    assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()


def test_every_runbook_anchor_exists_and_every_runbook_has_an_alert() -> None:
    anchors = github_anchors(RUNBOOKS.read_text())
    names = {name.lower() for name in alert_rules()}
    assert names - anchors == set()
    runbook_alerts = set(re.findall(r"^### (Kmem\w+)$", RUNBOOKS.read_text(), re.MULTILINE))
    assert runbook_alerts == set(alert_rules()), "a runbook for an alert that does not exist, or none for one"


def test_runbook_base_is_the_one_the_docs_tell_how_to_replace() -> None:
    page = DASHBOARDS_AND_ALERTS.read_text()
    base = RUNBOOK_BASE.split("/docs/")[0] + "/"
    assert f"s#{base}#" in page, "docs/dashboards-and-alerts.md shows the substitution that sets the runbook URL"
    for path in [*RULE_FILES, *UNIT_TESTS]:
        if not re.search(r"\balert(name)?:", path.read_text()):
            continue  # recording rules only
        urls = re.findall(r"https?://[^\s\"']+runbooks\.md#\w+", path.read_text())
        assert urls and all(url.startswith(RUNBOOK_BASE) for url in urls), path.name


def test_docs_list_every_alert() -> None:
    section = DASHBOARDS_AND_ALERTS.read_text().split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(Kmem\w+)`", section))
    assert listed == set(alert_rules())


@pytest.mark.parametrize("name", sorted(alert_rules()))
def test_runbook_says_what_it_means_and_what_to_do(name: str) -> None:
    text = RUNBOOKS.read_text()
    section = text.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]
    assert "**Meaning.**" in section and "**What to do.**" in section, name


def test_alertmanager_example_config_is_valid() -> None:
    result = run(require_tool("amtool"), "check-config", str(AM_EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("severity, receiver", [("critical", "pager"), ("warning", "chat"), ("info", "tickets")])
def test_alertmanager_example_routes_by_severity(severity: str, receiver: str) -> None:
    result = run(require_tool("amtool"), "config", "routes", "test", f"--config.file={AM_EXAMPLE}",
                 f"severity={severity}", "alertname=KmemMemcgIdsCritical", "instance=node1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def test_every_alert_severity_has_a_route() -> None:
    config = yaml.safe_load(AM_EXAMPLE.read_text())
    routed = {m.split("=")[1].strip('"') for r in config["route"]["routes"] for m in r["matchers"]}
    assert {rule["labels"]["severity"] for rule in alert_rules().values()} <= routed


def test_runbook_links_resolve() -> None:
    text = RUNBOOKS.read_text()
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links, "the runbooks link to their remedies"
    assert links - github_anchors(text) == set()


@pytest.mark.parametrize("remedy", [
    "echo 1 > /proc/sys/vm/compact_memory", "echo 3 > /proc/sys/vm/drop_caches", "vm.min_free_kbytes",
    "vm.watermark_scale_factor", "vm.extfrag_threshold", "cgroup.memory=nokmem", "-tags=nokmem",
    "docker-ce **18.09.1 or later**", "3.10.0-1075.el7",
])
def test_runbooks_give_each_remedy_with_its_cost(remedy: str) -> None:
    remedies = RUNBOOKS.read_text().split("\n## Remedies\n", 1)[1]
    section = next(s for s in remedies.split("\n### ") if remedy in s)
    assert "**Cost:**" in section, remedy


@pytest.mark.parametrize("order", ["6", "4"])
def test_the_watched_fragmentation_order_is_set_in_one_rule(tmp_path: Path, order: str) -> None:
    """KmemHighOrderFragmentation watches the order the kmem:fragmentation_alert_order rule records: the shipped 6,
    and 4 when that rule (value and label) is changed. The same zone fires at the watched order only."""
    default = 'expr: vector(6)\n        labels:\n          order: "6"'
    original = (ALERTS / "fragmentation.yaml").read_text()
    assert original.count(default) == 1
    (tmp_path / "fragmentation.yaml").write_text(original.replace(default, default.replace("6", order)))
    series = {
        'kmem_buddy_largest_free_order{instance="host",job="kmem-exporter",node="0",zone="Normal"}': "3x30",
        'kmem_extfrag_index{instance="host",job="kmem-exporter",node="0",zone="Normal",order="4"}': "0.8x30",
        'kmem_extfrag_index{instance="host",job="kmem-exporter",node="0",zone="Normal",order="6"}': "0.95x30",
    }
    labels = (f'ALERTS{{alertname="KmemHighOrderFragmentation",alertstate="firing",instance="host",job="kmem-exporter",'
              f'node="0",order="{order}",severity="warning",zone="Normal"}}')
    unit_test = {
        "rule_files": ["fragmentation.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": name, "values": values} for name, values in series.items()],
            "promql_expr_test": [{"expr": 'ALERTS{alertname="KmemHighOrderFragmentation"}', "eval_time": "20m",
                                  "exp_samples": [{"labels": labels, "value": 1}]}],
        }],
    }
    (tmp_path / "order_test.yaml").write_text(yaml.safe_dump(unit_test))
    result = run(require_tool("promtool"), "test", "rules", str(tmp_path / "order_test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
