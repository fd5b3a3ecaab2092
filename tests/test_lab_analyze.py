"""The kernel lab's judgement (lab/analyze.py) of a guest's result: each alert's lead and margin from the series
Prometheus stored, false alarms, expected alerts that came late, and a failure that no alert announced."""

from __future__ import annotations

import sys
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from conftest import PROJECT

sys.path.insert(0, str(PROJECT))
from lab import analyze, table  # noqa: E402

START = 1000.0


def firing(name: str, first: float, rules: str = "scaled", **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "alertstate": "firing", "lab_rules": rules, **labels},
            "values": [[START + first, 1], [START + first + 10, 1]]}


def result(scenario: str, failure: float | None, alerts: list[dict[str, Any]], kernel: str = "6.1.0-57-amd64",
           series: dict[str, list[dict[str, Any]]] | None = None, **marks: float) -> dict[str, Any]:
    all_marks = {"start": START, **{name: START + at for name, at in marks.items()}}
    if failure is not None:
        all_marks["failure"] = START + failure
    return {"kernel": kernel, "scenario": scenario, "marks": all_marks, "alerts": alerts, "series": series or {},
            "checks": [{"name": "a check", "passed": True, "detail": ""}], "measures": {}}


FREE_BLOCKS = {"free blocks of order >= 6": [{"values": [[START, 200], [START + 95, 31], [START + 101, 0]]}],
               "free blocks of order >= 4": [{"values": [[START, 260], [START + 95, 38], [START + 101, 3]]}]}


def test_leads_margins_and_the_alert_that_came_late() -> None:
    judgement = analyze.judge(result("fragmentation", 100, [
        firing("KmemHighOrderBlocksRunningOut", 96, node="0", order="6", zone="DMA32"),
        firing("KmemPageAllocationFailure", 103, event="page_allocation_failure", order="4"),
        firing("KmemHighOrderFragmentation", 130, node="0", order="6", zone="DMA32"),
        firing("KmemPageAllocationFailure", 102, "shipped", event="page_allocation_failure", order="4"),
    ], series=FREE_BLOCKS))
    leads = {(f.alert, f.rules): (f.lead, f.margin) for f in judgement.firings}
    assert leads == {
        ("KmemHighOrderBlocksRunningOut", "scaled"): (4, "31 free blocks of order >= 6, 38 of order >= 4"),
        ("KmemPageAllocationFailure", "scaled"): (-3, "0 free blocks of order >= 6, 3 of order >= 4"),
        ("KmemHighOrderFragmentation", "scaled"): (-30, "0 free blocks of order >= 6, 3 of order >= 4"),
        ("KmemPageAllocationFailure", "shipped"): (-2, "0 free blocks of order >= 6, 3 of order >= 4")}
    assert [f.first for f in judgement.firings] == sorted(f.first for f in judgement.firings)
    assert judgement.missed == [] and judgement.false_alarms == []
    # The state alert came after the failure: a finding about it, not a missed failure (its neighbour warned).
    assert judgement.late == ["KmemHighOrderFragmentation fired only after the failure"]
    assert table.findings(judgement) == "KmemHighOrderFragmentation fired only after the failure"
    assert table.passed(judgement)


def test_a_failure_no_alert_announced_is_missed() -> None:
    judgement = analyze.judge(result("fragmentation", 100, [
        firing("KmemPageAllocationFailure", 98, event="page_allocation_failure", order="4"),  # reports, warns not
        firing("KmemHighOrderFragmentation", 130, node="0", order="6", zone="DMA32")]))
    assert judgement.missed == ["no alert fired before the failure"]
    assert judgement.late == ["KmemHighOrderBlocksRunningOut never fired",
                              "KmemHighOrderFragmentation fired only after the failure"]
    assert table.findings(judgement).startswith("missed failure: no alert fired before the failure; ")


def test_an_alert_where_its_state_is_not_real_is_a_false_alarm() -> None:
    judgement = analyze.judge(result("healthy", None, [firing("KmemExporterDown", 50),
                                                       firing("KmemExporterDown", 60, "shipped")]))
    assert judgement.false_alarms == ["KmemExporterDown (scaled)", "KmemExporterDown (shipped)"]
    assert not table.passed(judgement)
    assert analyze.judge(result("healthy", None, [])).false_alarms == []


def test_memory_cgroup_id_alerts_are_false_alarms_before_cgroups_stay_online() -> None:
    ids = {"memory cgroup IDs in use": [{"values": [[START, 2], [START + 300, 60000], [START + 400, 65000]]}]}
    early = analyze.judge(result("memcg", 500, [firing("KmemMemcgIdsHigh", 100)], online=200, series=ids))
    assert early.false_alarms == ["KmemMemcgIdsHigh (scaled)"]
    on_time = analyze.judge(result("memcg", 500, [firing("KmemMemcgIdsExhaustionPredicted", 300),
                                                  firing("KmemMemcgIdsHigh", 400),
                                                  firing("KmemMemcgIdsCritical", 410)],
                                   kernel="5.10.0-32-amd64", online=200, series=ids))
    assert on_time.false_alarms == [] and on_time.missed == [] and on_time.late == []
    # 5.10 hands out 65,534 IDs
    assert [f.margin for f in on_time.firings] == ["5534 IDs left", "534 IDs left", "534 IDs left"]


def test_without_a_failure_no_alert_is_late() -> None:
    judgement = analyze.judge(result("conntrack", None, [firing("KmemConntrackTableNearlyFull", 300)]))
    assert judgement.late == [] and judgement.missed == [] and judgement.firings[0].lead is None


WARNING = {"KmemHighOrderBlocksRunningOut", "KmemHighOrderFragmentation"}


@given(st.dictionaries(st.sampled_from(sorted(WARNING | {"KmemPageAllocationFailure", "KmemCompactionFailing"})),
                       st.integers(0, 200)),
       st.integers(1, 200))
def test_missed_exactly_when_no_warning_alert_fired_by_the_failure(firsts: dict[str, int], failure: int) -> None:
    judgement = analyze.judge(result("fragmentation", failure, [firing(n, t) for n, t in firsts.items()]))
    warned = any(firsts.get(name, failure + 1) <= failure for name in WARNING)
    assert judgement.missed == ([] if warned else ["no alert fired before the failure"])
    assert {line.split()[0] for line in judgement.late} == {
        name for name in WARNING | {"KmemPageAllocationFailure"}
        if name not in firsts or (name in WARNING and firsts[name] > failure)}
    assert judgement.false_alarms == []
