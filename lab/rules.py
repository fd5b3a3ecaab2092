"""The rules a lab guest's Prometheus evaluates, rendered from the project's own mixin (mixin/render.py).

Two sets, told apart by the label lab_rules on every alert: "shipped" (the mixin's defaults, exactly as in
alerts/) and "scaled" (every duration and window divided by SCALE, and every threshold that is a rate per minute
or per hour multiplied by it, so that one lab second stands for SCALE field seconds). The recording rules carry no
duration and are loaded once.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "mixin"))
import render  # noqa: E402  (mixin/render.py)

SCALE = 60
DURATION = re.compile(r"^(\d+)([smhd])$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Thresholds that are rates per minute or per hour of the field's clock.
RATES = ("compactionFailuresPerMinute", "allocationStallsPerMinute", "memcgDyingPerHour")
# KmemExporterDown counts failed scrapes, and the lab's scrapes are not compressed: the guest's Prometheus scrapes
# every LAB_SCRAPE_SECONDS (lab/guest/harness.py), a host's every FIELD_SCRAPE_SECONDS or so (kube-prometheus'
# default). Its `for:` is kept at as many lab scrapes as the shipped one spans field scrapes (5m: 10 scrapes, 20 s);
# divided by SCALE it would be 5 s, two or three scrapes, which a guest slowed by TCG misses without being down.
LAB_SCRAPE_SECONDS = 2
FIELD_SCRAPE_SECONDS = 30
# Prediction horizons in seconds of the field's clock.
HORIZONS = ("conntrackFillHorizonSeconds", "fragmentationTrendHorizonSeconds")


def scaled_config(scale: int = SCALE) -> dict[str, Any]:
    """The mixin's _config settings that the scale changes: its durations divided by scale, its rate thresholds
    multiplied by it, its prediction horizons divided by it."""
    shipped = render.config()
    config: dict[str, Any] = {}
    for key, value in shipped.items():
        duration = DURATION.match(value) if isinstance(value, str) else None
        if duration:
            config[key] = f"{max(1, int(duration[1]) * SECONDS[duration[2]] // scale)}s"
    for key in RATES:
        config[key] = float(shipped[key]) * scale
    # The age of the exporter's own background passes is measured on the exporter's clock, which the lab does not
    # compress: that threshold stays as shipped.
    del config["backgroundPassStaleFor"]
    down = DURATION.match(shipped["exporterDownFor"])
    assert down, shipped["exporterDownFor"]
    config["exporterDownFor"] = f"{int(down[1]) * SECONDS[down[2]] // FIELD_SCRAPE_SECONDS * LAB_SCRAPE_SECONDS}s"
    config["memcgPredictHorizonHours"] = shipped["memcgPredictHorizonHours"] / scale
    for key in HORIZONS:
        config[key] = int(shipped[key]) // scale
    return config


def alert_groups(config: dict[str, Any] | None, label: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = render.evaluate(config)["alerts"]
    for group in groups:
        group["name"] = f"{group['name']}-{label}"
        group["rules"] = [rule for rule in group["rules"] if "alert" in rule]
        for rule in group["rules"]:
            rule.setdefault("labels", {})["lab_rules"] = label
    return groups


def write_rules(directory: Path, scale: int = SCALE) -> dict[str, Any]:
    """Write recording.yaml, shipped.yaml and scaled.yaml into directory; the scaled settings are returned."""
    directory.mkdir(parents=True, exist_ok=True)
    config = scaled_config(scale)
    evaluated = render.evaluate()
    recording = [{"name": g["name"], "rules": [r for r in g["rules"] if "record" in r]}
                 for g in evaluated["alerts"] + evaluated["rules"]]
    recording = [g for g in recording if g["rules"]]
    (directory / "recording.yaml").write_text(render.dump_yaml({"groups": recording}))
    (directory / "shipped.yaml").write_text(render.dump_yaml({"groups": alert_groups(None, "shipped")}))
    (directory / "scaled.yaml").write_text(render.dump_yaml({"groups": alert_groups(config, "scaled")}))
    return config
