"""Write deploy/kubernetes/prometheusrule.yaml: the rule groups of alerts/*.yaml as a Prometheus Operator rule.

    python deploy/kubernetes/generate_prometheusrule.py           # rewrite the file
    python deploy/kubernetes/generate_prometheusrule.py --check    # exit 1 when the file is out of date

A rule file is a YAML file in alerts/ with a top-level `groups` list (promtool unit-test files, with
`rule_files`, are skipped). Groups keep their order within a file; files are taken in name order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
ALERTS = PROJECT / "alerts"
OUTPUT = Path(__file__).resolve().parent / "prometheusrule.yaml"

HEADER = """\
# Generated from alerts/*.yaml by deploy/kubernetes/generate_prometheusrule.py; do not edit.
# Regenerate with `make prometheusrule` after changing the rule files.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL expressions, descriptions) as literal blocks, as a person would write them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


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
    names = [group.get("name") for group in groups]
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
            "labels": {"app.kubernetes.io/name": "kmem-exporter", "app.kubernetes.io/component": "alerting"},
        },
        "spec": {"groups": rule_groups(alerts)},
    }
    body = yaml.dump(rule, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)
    return HEADER + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT.relative_to(PROJECT)} is out of date: run `make prometheusrule`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(PROJECT)} ({len(rule_groups())} groups)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
