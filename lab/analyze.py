"""One guest's result.json turned into the lab's judgement: when each alert fired (from Prometheus's ALERTS),
its lead time before the failure and the margin left, false alarms and missed failures, remedies and checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from kmem_exporter.collectors.memcg import id_limit
from kmem_exporter.parsers.kernel import parse_release

ID_ALERTS = {"KmemMemcgIdsHigh", "KmemMemcgIdsCritical", "KmemMemcgIdsExhaustionPredicted"}
# The labels every alert has; the others tell its firings apart in the table.
IDENTITY_LABELS = {"__name__", "alertname", "alertstate", "lab_rules", "instance", "job", "severity"}
# Per scenario: the alerts that must fire (a failure they miss is a finding), and those that may fire because the
# state they describe is real there. Any other alert that fires is a false alarm.
EXPECTED = {
    "fragmentation": ({"KmemHighOrderBlocksRunningOut", "KmemHighOrderFragmentation", "KmemPageAllocationFailure"},
                      {"KmemCompactionFailing", "KmemAllocationStalls"}),
    "memcg": (ID_ALERTS, {"KmemMemcgDyingGrowing"}),
    "memcg-nokmem": (set(), {"KmemMemcgDyingGrowing"}),
    "conntrack": ({"KmemConntrackTableNearlyFull", "KmemConntrackTableFull"}, set()),
    "oom": (set(), set()),
    "healthy": (set(), set()),
}
# Alerts that report a failure the kernel logged: they fire after it by design.
REPORTING = {"KmemPageAllocationFailure", "KmemConntrackTableFull", "KmemSlabCacheCreationFailure"}
# The series whose values at an alert's firing are its margin, and how to turn them into words (given the guest
# kernel's memory cgroup ID limit).
MARGINS: dict[str, list[tuple[str, str, Callable[[float, int], float]]]] = {
    "fragmentation": [("free blocks of order >= 6", "{:.0f} free blocks of order >= 6", lambda v, _: v),
                      ("free blocks of order >= 4", "{:.0f} of order >= 4", lambda v, _: v)],
    "memcg": [("memory cgroup IDs in use", "{:.0f} IDs left", lambda v, limit: limit - v)],
    "memcg-nokmem": [("memory cgroup IDs in use", "{:.0f} IDs left", lambda v, limit: limit - v)],
    "conntrack": [("conntrack entries / limit", "{:.0%} of the table left", lambda v, _: 1 - v)],
}


@dataclass
class Firing:
    alert: str
    rules: str  # "scaled" or "shipped"
    labels: str
    first: float  # seconds since the start
    last: float
    lead: Optional[float]  # seconds before the failure (negative: after it)
    margin: str


@dataclass
class Judgement:
    kernel: str
    scenario: str
    failure: Optional[float]
    firings: list[Firing] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # the failure, when no alert announced it
    late: list[str] = field(default_factory=list)  # expected alerts that did not fire before the failure (or at all)
    checks_passed: int = 0
    checks: list[dict[str, Any]] = field(default_factory=list)
    measures: dict[str, Any] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)


def value_at(series: list[dict[str, Any]], moment: float) -> Optional[float]:
    best = None
    for one in series:
        for when, number in one["values"]:
            if when <= moment + 0.5:
                best = number
    return best


def judge(result: dict[str, Any]) -> Judgement:
    start = result["marks"]["start"]
    scenario = result["scenario"]
    failure = result["marks"].get("failure")
    judgement = Judgement(result["kernel"], scenario, None if failure is None else failure - start,
                          checks=result["checks"], measures=result["measures"],
                          marks={k: v - start for k, v in result["marks"].items()})
    judgement.checks_passed = sum(1 for c in result["checks"] if c["passed"])
    must, may = EXPECTED[scenario]
    # The memory cgroup ID alerts may fire only once cgroups stay online (phase 2 of the memcg scenario): while
    # only dying cgroups pile up (they hold no ID since 4.7) a firing is a false alarm.
    online = result["marks"].get("online", float("inf"))
    if scenario == "memcg":
        must = must if failure is not None else set()  # no mkdir failed: the guest's own check says so
        may = may | (ID_ALERTS if online < float("inf") else set())
    margin = MARGINS.get(scenario)
    limit = id_limit(parse_release(result["kernel"]))  # the IDs the guest's kernel hands out
    fired: dict[str, set[str]] = {"scaled": set(), "shipped": set()}
    for series in result["alerts"]:
        labels = series["labels"]
        name, rules = labels["alertname"], labels.get("lab_rules", "?")
        first, last = series["values"][0][0], series["values"][-1][0]
        parts = []
        for title, text, turn in margin or []:
            at = value_at(result["series"].get(title, []), first)
            if at is not None:
                parts.append(text.format(turn(at, limit)))
        words = ", ".join(parts)
        kernel = value_at([{"values": result["measures"].get("online_timeline", [])}], first)
        if parts and kernel is not None and name in ID_ALERTS:
            words += f" ({limit - kernel:.0f} in the kernel)"
        extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in IDENTITY_LABELS)
        judgement.firings.append(Firing(name, rules, extra, first - start, last - start,
                                        None if failure is None else failure - first, words))
        fired.setdefault(rules, set()).add(name)
        early = name in ID_ALERTS and first < online
        if (name not in must | may or early) and f"{name} ({rules})" not in judgement.false_alarms:
            judgement.false_alarms.append(f"{name} ({rules})")
    ahead: set[str] = set()  # the expected alerts that fired (scaled rules) no later than the failure
    for f in judgement.firings:
        if f.rules == "scaled" and f.alert in must and (judgement.failure is None or f.first <= judgement.failure):
            ahead.add(f.alert)
    if failure is not None:  # without a failure the guest's own checks say what went wrong
        for name in sorted(must):
            if name not in fired["scaled"]:
                judgement.late.append(f"{name} never fired")
            elif name not in REPORTING and name not in ahead:
                judgement.late.append(f"{name} fired only after the failure")
        if must - REPORTING and not (ahead - REPORTING):
            judgement.missed.append("no alert fired before the failure")
    judgement.firings.sort(key=lambda f: (f.first, f.alert))
    return judgement
