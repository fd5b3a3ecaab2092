"""Render the monitoring mixin (mixin/mixin.libsonnet) into the files the project ships.

    python mixin/render.py                  # rewrite alerts/*.yaml and dashboards/*.json
    python mixin/render.py --check          # exit 1 when a checked-in file differs from the render
    python mixin/render.py --config '{"showMultiCluster": true}' --output DIR   # other _config settings, into DIR

Each rule group goes to alerts/<group name without "kmem-">.yaml; each dashboard to dashboards/<its key>. With
--output, the same paths are written under DIR. The Kubernetes files are made from these by
deploy/kubernetes/generate_prometheusrule.py and generate_dashboards.py (`make mixin` runs all three).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import _jsonnet
import yaml

MIXIN = Path(__file__).resolve().parent
PROJECT = MIXIN.parent
HEADER = "# Generated from mixin/ by mixin/render.py (`make mixin`); do not edit: change mixin/*.libsonnet.\n"
EVALUATE = """
local mixin = (import 'mixin.libsonnet') + { _config+:: std.parseJson(std.extVar('config')) };
{
  alerts: mixin.prometheusAlerts.groups,
  rules: mixin.prometheusRules.groups,
  dashboards: mixin.grafanaDashboards,
}
"""


class _Dumper(yaml.SafeDumper):
    """Rule files as a person writes them: nested lists indented, PromQL and long texts as literal blocks, and
    strings that would read as numbers ("6") in double quotes."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    if len(value) > 100:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=">")
    implicit = dumper.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    style = '"' if implicit != "tag:yaml.org,2002:str" else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def evaluate(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The mixin's rule groups and dashboards, with `config` merged into its _config."""
    text = _jsonnet.evaluate_snippet("render", EVALUATE, jpathdir=[str(MIXIN)],
                                     ext_vars={"config": json.dumps(config or {})})
    result: dict[str, Any] = json.loads(text)
    return result


def config() -> dict[str, Any]:
    """The mixin's _config: every setting with its default."""
    text = _jsonnet.evaluate_snippet("config", "(import 'config.libsonnet')._config", jpathdir=[str(MIXIN)])
    settings: dict[str, Any] = json.loads(text)
    return settings


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)


# Rule keys in the order a person writes them (jsonnet sorts object keys).
KEY_ORDER = ["name", "interval", "rules", "record", "alert", "expr", "for", "labels", "annotations", "summary",
             "description", "runbook_url"]


def ordered(data: Any) -> Any:
    """data with the keys of its mappings in KEY_ORDER, then the others in their order."""
    if isinstance(data, dict):
        rank = {key: number for number, key in enumerate(KEY_ORDER)}
        keys = sorted(data, key=lambda key: rank.get(key, len(rank)))
        return {key: ordered(data[key]) for key in keys}
    if isinstance(data, list):
        return [ordered(item) for item in data]
    return data


def rule_file(group: dict[str, Any]) -> Path:
    return Path("alerts") / (str(group["name"]).removeprefix("kmem-") + ".yaml")


def render(config: dict[str, Any] | None = None) -> dict[Path, str]:
    """Every rendered file by its path relative to the project (or to --output)."""
    mixin = evaluate(config)
    groups = ordered([*mixin["alerts"], *mixin["rules"]])
    files: dict[Path, str] = {}
    for group in groups:
        path = rule_file(group)
        if path in files:
            raise ValueError(f"two rule groups render into {path}")
        files[path] = HEADER + dump_yaml({"groups": [group]})
    for name, board in mixin["dashboards"].items():
        files[Path("dashboards") / name] = json.dumps(board, indent=2) + "\n"
    return files


def stale_files(files: dict[Path, str], root: Path = PROJECT) -> list[Path]:
    """The rendered files whose copy under root is missing or different."""
    stale = []
    for path, text in files.items():
        target = root / path
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(path)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the rendered files are current")
    parser.add_argument("--config", default="{}", help="JSON object merged into the mixin's _config")
    parser.add_argument("--output", type=Path, default=PROJECT, help="where to write (default: the project)")
    args = parser.parse_args(argv)
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as error:
        parser.error(f"--config is not JSON: {error}")
    if not isinstance(config, dict):
        parser.error("--config must be a JSON object")
    files = render(config)
    if args.check:
        stale = stale_files(files, args.output)
        if stale:
            print(f"out of date: {', '.join(map(str, stale))}; run `make mixin`", file=sys.stderr)
            return 1
        return 0
    for path, text in files.items():
        target = args.output / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} files under {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
