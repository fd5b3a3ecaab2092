"""`kmem-exporter report --format json`: every fixture tree's output valid against docs/report.schema.json, the exit
status as the verdict says, findings that are the alert rules (severity, runbook), and thresholds defined once in
thresholds.yaml, followed by both the report and the rendered alerts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import FIXTURES, PROJECT, fixture_flags, run_exporter
from kmem_exporter.report.findings import STATUSES
from kmem_exporter.report.thresholds import parse_thresholds, thresholds

SCHEMA = json.loads((PROJECT / "docs" / "report.schema.json").read_text())
TREES = sorted(path.name for path in FIXTURES.iterdir() if (path / "proc").is_dir())
THRESHOLDS = PROJECT / "exporter" / "kmem_exporter" / "thresholds.yaml"


@lru_cache(maxsize=None)
def report_json(host: str) -> tuple[int, dict[str, Any]]:
    result = run_exporter("report", "--format", "json", *fixture_flags(host))
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def alert_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for path in sorted((PROJECT / "alerts").glob("*.yaml"))
            for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "alert" in rule}


def test_the_schema_is_a_valid_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_refuses_what_it_should() -> None:
    """The validation below can fail: a report missing a key, or with an unknown status, is refused."""
    _, data = report_json("rhel7-fragmented")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    assert not list(validator.iter_errors(data))
    for broken in ({k: v for k, v in data.items() if k != "findings"}, {**data, "status": "fine"},
                   {**data, "findings": [{**data["findings"][0], "severity": "info"}]}):
        assert list(validator.iter_errors(broken))


@pytest.mark.parametrize("host", TREES)
def test_every_fixture_tree_gives_valid_json(host: str) -> None:
    status, data = report_json(host)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    assert status == data["exit_status"] == STATUSES.index(data["status"])
    severities = {finding["severity"] for finding in data["findings"]}
    expected = "critical" if "critical" in severities else "warning" if severities else "healthy"
    expected = expected if data["fragmentation"]["zones"] or data["memcg"] or data["slab"]["cache_count"] else "unknown"
    assert data["status"] == expected
    assert [name for name, c in data["collectors"].items() if not c["success"]] == [
        f["labels"]["collector"] for f in data["findings"] if f["alert"] == "KmemExporterCollectorFailing"]


def test_exit_statuses() -> None:
    assert report_json("broken-buddyinfo-empty")[0] == 3  # no zone, memory cgroup or slab cache: unknown
    assert report_json("cgroup2-6.18")[0] == 0  # healthy
    assert report_json("rhel7-fragmented")[0] == 1  # fragmented: warnings
    assert report_json("memcg-near-exhausted")[0] == 2  # memory cgroup IDs nearly gone: critical


def test_nothing_to_judge_exits_3(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    result = run_exporter("report", "--format", "json", f"--path.procfs={tmp_path / 'proc'}",
                          f"--path.sysfs={tmp_path / 'sys'}")
    assert result.returncode == 3, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "unknown"
    # Only kernel_log succeeds (it has nothing to read in a one-shot run): nothing of memory can be judged.
    assert [name for name, c in data["collectors"].items() if c["success"]] == ["kernel_log"]
    assert data["fragmentation"]["zones"] == [] and data["memcg"] is None


def test_a_bad_report_flag_exits_3() -> None:
    for flags in (["--format", "yaml"], ["--from.username", "alice"], ["--no-such-flag"]):
        result = run_exporter("report", *flags)
        assert result.returncode == 3, (flags, result.stderr)
        assert "error" in result.stderr


def test_fragmentation_numbers() -> None:
    _, data = report_json("rhel7-fragmented")
    normal = next(z for z in data["fragmentation"]["zones"] if z["zone"] == "Normal")
    assert normal["largest_free_order"] == 3
    assert normal["free_blocks"] == {"0": 40153, "1": 12774, "2": 302, "3": 17, **{str(o): 0 for o in range(4, 11)}}
    finding = next(f for f in data["findings"] if f["labels"].get("zone") == "Normal")
    assert finding["values"]["extfrag_index"] == normal["extfrag_index"]["6"] > data["fragmentation"]["extfrag_limit"]
    assert finding["values"]["order"] == data["fragmentation"]["watched_order"] == 6


def test_findings_are_the_alert_rules() -> None:
    """Each finding has its alert's severity, and its runbook anchor is a heading of docs/runbooks.md."""
    rules = alert_rules()
    anchors = {re.sub(r"[^a-z0-9-]", "", line.lstrip("#").strip().lower().replace(" ", "-"))
               for line in (PROJECT / "docs" / "runbooks.md").read_text().splitlines() if line.startswith("#")}
    seen = set()
    for host in TREES:
        for finding in report_json(host)[1]["findings"]:
            assert finding["severity"] == rules[finding["alert"]]["labels"]["severity"], finding
            assert finding["runbook"].partition("#")[2] in anchors, finding
            seen.add(finding["alert"])
    assert {"KmemHighOrderFragmentation", "KmemMemcgIdsCritical", "KmemKmemAccountingOnBuggyKernel",
            "KmemConntrackSlabCacheLeak", "KmemExporterCollectorFailing"} <= seen


def test_the_thresholds_are_the_mixins() -> None:
    """The mixin's _config takes them from thresholds.yaml: the checked-in alerts carry its numbers."""
    limits = thresholds()
    rules = alert_rules()
    assert rules["KmemMemcgIdsHigh"]["expr"].endswith(f"> {limits.memcg_ids_high_ratio:g}")
    assert rules["KmemMemcgIdsCritical"]["expr"].endswith(f"> {limits.memcg_ids_critical_ratio:g}")
    running_out = rules["KmemHighOrderBlocksRunningOut"]["expr"]
    assert f'zone!~"{limits.ignored_zones}"}} > {limits.fragmentation_unusable_ratio:g}' in running_out
    assert f"{limits.fragmentation_free_watermark_factor:g} * kmem_zone_watermark_bytes" in running_out
    assert "thresholds.yaml" in (PROJECT / "mixin" / "config.libsonnet").read_text()


def test_the_thresholds_file_is_checked() -> None:
    text = THRESHOLDS.read_text()
    assert parse_thresholds(text) == thresholds()
    with pytest.raises(ValueError, match="memcgIdsHighRatio"):
        parse_thresholds(text.replace("memcgIdsHighRatio: 0.8", "memcgIdsHighRatio: high"))
    with pytest.raises(ValueError, match="expected the keys"):
        parse_thresholds(text.replace("conntrackTableRatio", "conntrackTableShare"))


def test_a_threshold_changed_in_one_place_changes_report_and_alerts(tmp_path: Path) -> None:
    """A copy of the package and the mixin, with memcgIdsHighRatio lowered in thresholds.yaml only: the copy's
    report warns of memory cgroup IDs on a node it called healthy, and its rendered alert fires at the new ratio."""
    shutil.copytree(PROJECT / "exporter", tmp_path / "exporter", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT / "mixin", tmp_path / "mixin", ignore=shutil.ignore_patterns("__pycache__"))
    copied = tmp_path / "exporter" / "kmem_exporter" / "thresholds.yaml"
    copied.write_text(copied.read_text().replace("memcgIdsHighRatio: 0.8", "memcgIdsHighRatio: 0.0002"))

    env = {**os.environ, "PYTHONPATH": str(tmp_path / "exporter")}
    command = [sys.executable, "-m", "kmem_exporter", "report", "--format", "json", *fixture_flags("cgroup2-6.18")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    data = json.loads(result.stdout)
    assert data["thresholds"]["memcg_ids_high_ratio"] == 0.0002
    assert [f["alert"] for f in data["findings"]] == ["KmemMemcgIdsHigh"]
    assert result.returncode == 1
    assert report_json("cgroup2-6.18")[1]["findings"] == []  # the project's own package is unchanged

    rendered = tmp_path / "rendered"
    subprocess.run([sys.executable, str(tmp_path / "mixin" / "render.py"), "--output", str(rendered)], check=True,
                   capture_output=True, timeout=120)
    memcg = yaml.safe_load((rendered / "alerts" / "memcg.yaml").read_text())["groups"][0]["rules"]
    high = next(rule for rule in memcg if rule.get("alert") == "KmemMemcgIdsHigh")
    assert high["expr"] == ('kmem_memcg_ids_in_use{job="kmem-exporter"} / kmem_memcg_id_limit{job="kmem-exporter"}'
                            ' > 0.0002')
