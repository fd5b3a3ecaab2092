"""What the generators of deploy/kubernetes share: YAML written as a person would, and the write-or-check command
line (`--check` exits 1 when the checked-in file is out of date)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import yaml

PROJECT = Path(__file__).resolve().parents[2]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL expressions, descriptions, dashboard JSON) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(documents: list[object]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120,
                         allow_unicode=True)


def header(source: str, script: str, target: str) -> str:
    return (f"# Generated from {source} by deploy/kubernetes/{script}; do not edit.\n"
            f"# Regenerate with `make {target}` after changing them.\n")


def main(description: str, output: Path, render: Callable[[], str], target: str) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not output.exists() or output.read_text(encoding="utf-8") != text:
            print(f"{output.relative_to(PROJECT)} is out of date: run `make {target}`", file=sys.stderr)
            return 1
        return 0
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output.relative_to(PROJECT)}")
    return 0
