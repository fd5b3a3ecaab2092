"""The lab's table: one row per kernel and scenario, as text while the lab runs and as Markdown at its end."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lab.analyze import Judgement


def broken(kernel: str, scenario: str, status: int, took: float) -> Judgement:
    """A guest that wrote no result: timed out (status -1) or failed to boot."""
    reason = "time limit reached" if status == -1 else f"guest exited {status} without a result"
    return Judgement(kernel, scenario, None, checks=[{"name": "the guest wrote its result", "passed": False,
                                                     "detail": f"{reason} after {took:.0f} s"}])


def passed(j: Judgement) -> bool:
    return j.checks_passed == len(j.checks) and not j.false_alarms


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def firings(j: Judgement, rules: str) -> str:
    parts = []
    for f in j.firings:
        if f.rules != rules:
            continue
        lead = "" if f.lead is None else f", lead {f.lead:+.0f} s"
        margin = f", {f.margin}" if f.margin and f.lead is not None else ""
        parts.append(f"{f.alert}{' ' + f.labels if f.labels else ''} at {f.first:.0f} s{lead}{margin}")
    return "; ".join(parts) or "none"


def remedy(j: Judgement) -> str:
    m = j.measures
    if j.scenario == "fragmentation" and "after_compaction" in m:
        b, a, r = m["before_compaction"], m["after_compaction"], m["after_release"]
        return (f"compact_memory: largest free order DMA32 {b['largest_free_order']['DMA32']}->"
                f"{a['largest_free_order']['DMA32']}, extfrag(6) {b['extfrag_index']['DMA32/6']}->"
                f"{a['extfrag_index']['DMA32/6']}, order-4 allocation {outcome(b)}->{outcome(a)}, "
                f"alert {'still firing' if a['alert_firing_after_hold'] else 'not firing'}; pins released: largest "
                f"{r['largest_free_order']['DMA32']}, allocation {'succeeds' if r['probe_succeeds'] else 'fails'}, "
                f"alert {'still firing' if r['alert_firing_after_hold'] else 'not firing'}")
    if j.scenario.startswith("memcg") and "drop_caches" in m:
        parts = []
        if "at_failure" in m:
            f = m["at_failure"]
            parts.append(f"{f['errno']} after {f['created_online']} new online cgroups in {f['seconds']} s "
                         f"({f['rate']}/s): {f['online']} online (root included), {f['dying']} dying, "
                         f"{f['in_use']} in num_cgroups")
        if "remove_online" in m:
            r = m["remove_online"]
            parts.append(f"online cgroups removed in {r['rmdir_seconds']} s: mkdir after: {r['mkdir_after']}, ID "
                         f"alerts resolved {seconds(r['alerts_resolved_after'])} s after the removal began")
        d = m["drop_caches"]
        parts.append(f"drop_caches: dying {d['dying_before']}->{d['dying_after']}, cgroups held {d['in_use_before']}->"
                     f"{d['in_use_after']}, mkdir after: {d['mkdir_after']}; kmem-enabled {m.get('kmem_enabled')}")
        return "; ".join(parts)
    if j.scenario == "conntrack" and "at_failure" in m:
        full = m["at_failure"]
        return f"table full at {full['entries']} of {full['limit']}; {m.get('namespaces_created')} namespaces"
    if j.scenario == "oom" and "kills" in m:
        k = m["kills"]
        return f"{k['processes']} kills: exporter {k['exporter']:.0f}, kernel lines {k['killed_process_lines']}"
    return "-"


def outcome(state: dict[str, Any]) -> str:
    return "succeeds" if state["probe_succeeds"] else "fails"


def findings(j: Judgement) -> str:
    parts = [f"false alarm: {a}" for a in j.false_alarms] + [f"missed failure: {m}" for m in j.missed]
    parts += j.late
    parts += [f"check failed: {c['name']} ({c['detail'][:160]})" for c in j.checks if not c["passed"]]
    return "; ".join(parts) or "none"


def row_text(j: Judgement) -> str:
    return (f"  {j.kernel} {j.scenario}: failure {seconds(j.failure)} s; scaled: {firings(j, 'scaled')}; shipped: "
            f"{firings(j, 'shipped')}; remedy: {remedy(j)}; checks {j.checks_passed}/{len(j.checks)}; "
            f"findings: {findings(j)}")


def markdown(judgements: list[Judgement], out: Path) -> str:
    lines = ["| kernel | scenario | failure | alerts fired (scaled rules): time, lead, margin | shipped rules | "
             "remedy | checks | findings |", "|---|---|---|---|---|---|---|---|"]
    for j in judgements:
        lines.append(f"| {j.kernel} | {j.scenario} | {seconds(j.failure)} s | {firings(j, 'scaled')} | "
                     f"{firings(j, 'shipped')} | {remedy(j)} | {j.checks_passed}/{len(j.checks)} | {findings(j)} |")
    return "\n".join(lines) + "\n"


def as_dict(j: Judgement) -> dict[str, Any]:
    return dataclasses.asdict(j)


def main(argv: list[str]) -> int:
    """`python -m lab.table RUN_DIR...`: the table of finished runs again (their summary.md rewritten)."""
    import json

    from lab.analyze import judge

    for run in map(Path, argv):
        order = ["healthy", "fragmentation", "memcg", "memcg-nokmem", "conntrack", "oom"]
        judgements = sorted((judge(json.loads(path.read_text())) for path in run.glob("*/*/result.json")),
                            key=lambda j: (j.kernel, order.index(j.scenario)))
        text = markdown(judgements, run)
        (run / "summary.md").write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
