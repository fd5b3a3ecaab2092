"""The README documents every flag, config key and collector the exporter has (metrics: test_metric_reference.py)."""

from __future__ import annotations

import re

import pytest

from conftest import PROJECT
from kmem_exporter.collectors import COLLECTORS
from kmem_exporter.config import ALL_SETTINGS, COLLECTOR_SWITCHES
from kmem_exporter.settings import parse_bool

README = (PROJECT / "README.md").read_text()


def table_rows(heading: str) -> list[str]:
    """The first cells of the first table after the line that is `heading`."""
    lines = README[README.index(f"\n{heading}\n"):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip())
    return rows


FLAG_ROWS = table_rows("### Flags and config file") + table_rows("Collector options:")


@pytest.mark.parametrize("setting", [s for s in ALL_SETTINGS if s.key not in COLLECTOR_SWITCHES], ids=lambda s: s.key)
def test_every_setting_has_a_row(setting: object) -> None:
    key = setting.key  # type: ignore[attr-defined]
    flag = f"`--[no-]{key}`" if setting.parse is parse_bool else f"`--{key}`"  # type: ignore[attr-defined]
    assert flag in FLAG_ROWS, f"README's flag tables have no row {flag}"


def test_no_row_names_a_setting_that_does_not_exist() -> None:
    keys = {s.key for s in ALL_SETTINGS} | {"config.file", "collector.<name>"}
    for row in FLAG_ROWS:
        key = re.fullmatch(r"`--(?:\[no-\])?([\w.<>-]+)`", row)
        assert key is not None and key.group(1) in keys, f"README documents {row}, which is no setting"


def test_every_collector_is_in_the_collectors_and_privileges_tables() -> None:
    assert sorted(table_rows("Collectors:")) == sorted(f"`{name}`" for name in COLLECTORS)
    privileges = set(table_rows("## Privileges"))
    assert {f"`{name}`" for name in COLLECTORS} <= privileges
