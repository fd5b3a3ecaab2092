"""Write the rule groups of alerts/*.yaml as a Prometheus Operator rule, the prometheusrule component's
prometheusrule.yaml.

    python deploy/kubernetes/generate_prometheusrule.py            # rewrite the file
    python deploy/kubernetes/generate_prometheusrule.py --check    # exit 1 when the file is out of date

A rule file is a YAML file in alerts/ with a top-level `groups` list (promtool unit-test files, with
`rule_files`, are skipped). Groups keep their order within a file; files are taken in name order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from generated_file import PROJECT, dump, header, main

ALERTS = PROJECT / "alerts"
OUTPUT = Path(__file__).resolve().parent / "components" / "prometheusrule" / "prometheusrule.yaml"
HEADER = header("alerts/*.yaml", "generate_prometheusrule.py", "prometheusrule")


def rule_files(alerts: Path = ALERTS) -> list[Path]:
    """The Prometheus rule files in `alerts`, in name order (none when the directory does not exist)."""
    if not alerts.is_dir():
        return []
    files = []
    for path in sorted([*alerts.glob("*.yaml"), *alerts.glob("*.yml")]):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "groups" in data and "rule_files" not in data:
            files.append(path)
    return files


def rule_groups(alerts: Path = ALERTS) -> list[dict[str, object]]:
    groups: list[dict[str, object]] = []
    for path in rule_files(alerts):
        file_groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"] or []
        if not isinstance(file_groups, list):
            raise SystemExit(f"{path}: `groups` is not a list")
        groups.extend(file_groups)
    names = [str(group.get("name")) for group in groups]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SystemExit(f"rule group names must be unique across alerts/: {', '.join(map(str, duplicates))}")
    return groups


def render(alerts: Path = ALERTS) -> str:
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "kmem-exporter",
            "labels": {"app.kubernetes.io/name": "kmem-exporter", "app.kubernetes.io/component": "alerting",
                       "app.kubernetes.io/part-of": "kmem-exporter"},
        },
        "spec": {"groups": rule_groups(alerts)},
    }
    return HEADER + dump([rule])


if __name__ == "__main__":
    sys.exit(main(__doc__.splitlines()[0], OUTPUT, render, "prometheusrule"))
