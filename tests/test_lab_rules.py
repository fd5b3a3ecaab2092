"""The kernel lab's rules (lab/rules.py): the scaled set changes exactly what the scale says, read from the mixin's
own settings, and both sets pass `promtool check rules`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import PROJECT, require_tool

sys.path.insert(0, str(PROJECT))
from lab import rules  # noqa: E402

SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd])", duration)
    assert match, duration
    return int(match[1]) * SECONDS[match[2]]


def test_every_duration_of_the_mixin_is_divided_by_the_scale() -> None:
    shipped = rules.render.config()
    scaled = rules.scaled_config(60)
    durations = {key for key, value in shipped.items() if isinstance(value, str) and re.fullmatch(r"\d+[smhd]", value)}
    assert {"memcgIdsCriticalFor", "fragmentationTrendWindow", "memcgPredictWindow"} <= durations
    for key in durations - {"backgroundPassStaleFor", "exporterDownFor"}:
        assert seconds(scaled[key]) == max(1, seconds(shipped[key]) // 60), key
    assert "backgroundPassStaleFor" not in scaled  # measured on the exporter's clock, which the lab does not compress
    # KmemExporterDown keeps as many scrapes as it spans in the field.
    assert seconds(scaled["exporterDownFor"]) // rules.LAB_SCRAPE_SECONDS == \
        seconds(shipped["exporterDownFor"]) // rules.FIELD_SCRAPE_SECONDS
    for key in rules.RATES:
        assert scaled[key] == shipped[key] * 60, key
    for key in rules.HORIZONS:
        assert scaled[key] == shipped[key] // 60, key
    assert scaled["memcgPredictHorizonHours"] == shipped["memcgPredictHorizonHours"] / 60


def test_the_lab_rule_files_pass_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    config = rules.write_rules(tmp_path, 60)
    scaled = yaml.safe_load((tmp_path / "scaled.yaml").read_text())
    shipped = yaml.safe_load((tmp_path / "shipped.yaml").read_text())
    critical = [rule for group in scaled["groups"] for rule in group["rules"]
                if rule["alert"] == "KmemMemcgIdsCritical"]
    assert [rule["for"] for rule in critical] == [config["memcgIdsCriticalFor"]]
    assert {rule["labels"]["lab_rules"] for group in shipped["groups"] for rule in group["rules"]} == {"shipped"}
    result = subprocess.run([promtool, "check", "rules", *(str(tmp_path / name) for name in
                                                           ("recording.yaml", "shipped.yaml", "scaled.yaml"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
