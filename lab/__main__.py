"""The kernel lab: `python -m lab [--profile ci|full] [--kernels 6.1,...] [--scenarios ...] [--out DIR [--resume]]`.

Boots each kernel once per scenario (one guest at a time, each with a time limit), then prints the table and
writes the plots, summary.md and summary.json into the run directory (lab/runs/<profile>-<time> by default).
`--resume` goes on with an interrupted run in DIR: the guests that finished keep their results, the others run, and
the table covers them all. It refuses a run made with another lab, exporter, mixin or rules, or other settings.
`--judge-again` boots nothing and writes DIR's table again with this lab's analysis.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lab import analyze, guests, plots, rules, run_record, table

SCENARIOS = ["healthy", "fragmentation", "memcg", "memcg-nokmem", "conntrack", "oom"]
# Guest memory and time limit (seconds) per profile and scenario. 65,535 online memory cgroups take about 1.5 GiB
# (6.1); 5 GiB leaves room for more dying ones (--memcg-dying). The limits leave room for a second guest beside it,
# or a test suite: the full run's 1,000 nokmem cgroups took 460 s instead of 150 beside one, past a 900 s limit.
MEMORY = {"ci": {"memcg": "3G"}, "full": {"memcg": "5G"}}
LIMITS = {"ci": {"healthy": 600, "memcg": 2400},
          "full": {"healthy": 900, "memcg": 5400, "memcg-nokmem": 1800, "conntrack": 1800}}
DEFAULT_LIMIT = 900


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--profile", choices=["ci", "full"], default="full")
    parser.add_argument("--kernels", default="5.10,6.1,6.12")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--memcg-dying", type=int, help="cgroups the memcg scenario leaves dying (the profile's count)")
    parser.add_argument("--memcg-rate", type=float,
                        help="new online cgroups a second in the memcg scenario's phase 2 (250, a field minute's pace)")
    parser.add_argument("--resume", action="store_true",
                        help="go on with the interrupted run in --out (same code and settings): finished guests kept")
    parser.add_argument("--judge-again", action="store_true",
                        help="boot nothing: write the table of the run in --out again, each guest that ended with a "
                             "result judged by this lab's analysis")
    args = parser.parse_args()
    if (args.resume or args.judge_again) and args.out is None:
        parser.error("--resume and --judge-again need --out, the run to go on with or to judge")
    kernels = guests.find_kernels(args.kernels.split(","))
    scenarios = args.scenarios.split(",")
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    out = (args.out or guests.PROJECT / "lab" / "runs" / f"{args.profile}-{time.strftime('%Y%m%dT%H%M%S')}").resolve()
    if args.judge_again:
        if not out.is_dir():
            parser.error(f"--judge-again: {out} holds no lab run")
        judged = [finished_guest(out / kernel.release / scenario) for kernel in kernels for scenario in scenarios]
        kept_judgements = [j for j in judged if j is not None]
        print(write_summary(out, kept_judgements))
        print(f"lab: {len(kept_judgements)} guests of {out} judged again ({len(judged) - len(kept_judgements)} without "
              "a result left out)")
        return 0 if all(table.passed(j) for j in kept_judgements) else 1
    out.mkdir(parents=True, exist_ok=True)
    settings = {"profile": args.profile, "memcg_dying": args.memcg_dying, "memcg_rate": args.memcg_rate,
                "revision": run_record.revision(guests.PROJECT)}
    if args.resume:
        refusal = run_record.resume_refusal(out / "run.json", settings)
        if refusal:
            parser.error(f"--resume: {refusal}")
    run_record.record_session(out / "run.json", settings, resumed=args.resume,
                              commit=run_record.commit(guests.PROJECT))
    rules.write_rules(out / "rules")
    judgements, started, kept = [], time.monotonic(), 0
    for kernel in kernels:
        module = guests.build_module(kernel, out / "kmod" / kernel.release)
        for scenario in scenarios:
            directory = out / kernel.release / scenario
            judgement = finished_guest(directory) if args.resume else None
            if judgement is not None:
                kept += 1
                print(f"lab: {kernel.release} {scenario}: kept from the interrupted run", flush=True)
            else:
                judgement = run_guest(kernel, scenario, directory, module, out, args)
            judgements.append(judgement)
            print(table.row_text(judgement), flush=True)
    total = time.monotonic() - started
    text = write_summary(out, judgements)
    run_record.record_session(out / "run.json", settings, resumed=args.resume, ended=True)
    print(text)
    print(f"lab: {len(judgements)} runs ({kept} kept from before) in {total / 60:.1f} min; artifacts in {out}")
    return 0 if all(table.passed(j) for j in judgements) else 1


def write_summary(out: Path, judgements: list[analyze.Judgement]) -> str:
    """Write the run's table (summary.md, summary.json) into out; the Markdown table."""
    text = table.markdown(judgements, out)
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps([table.as_dict(j) for j in judgements], indent=1))
    return text


def run_guest(kernel: guests.Kernel, scenario: str, directory: Path, module: Path, out: Path,
              args: argparse.Namespace) -> analyze.Judgement:
    """Boot kernel for scenario with its results in directory; their judgement, or the broken guest's."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("result.json", "guest.json"):
        (directory / name).unlink(missing_ok=True)
    command = (f"PYTHONPATH={guests.PROJECT} {sys.executable} -m lab.guest {scenario} --out {directory} "
               f"--rules {out / 'rules'} --module {module} --hierarchy {kernel.hierarchy} "
               f"--profile {args.profile} --scale {rules.SCALE}")
    if args.memcg_dying is not None:
        command += f" --memcg-dying {args.memcg_dying}"
    if args.memcg_rate is not None:
        command += f" --memcg-rate {args.memcg_rate}"
    limit = LIMITS[args.profile].get(scenario, DEFAULT_LIMIT)
    print(f"lab: {kernel.release} {scenario} (limit {limit} s)", flush=True)
    memory = MEMORY[args.profile].get(scenario, "1G")
    status, took = guests.boot(kernel, command, out, directory / "console.log", memory, limit,
                               "cgroup.memory=nokmem" if scenario == "memcg-nokmem" else "")
    if not (directory / "result.json").exists():
        return table.broken(kernel.release, scenario, status, took)
    run_record.record_guest(directory, status, took)
    return judge_guest(directory, took)


def judge_guest(directory: Path, took: float, plot: bool = True) -> analyze.Judgement:
    """The judgement of a guest that wrote its result, and (with plot) its plot."""
    result = json.loads((directory / "result.json").read_text())
    result["guest_seconds"] = took
    if plot:
        plots.plot(result, directory / "plot.png")
    judgement = analyze.judge(result)
    judgement.measures["guest_seconds"] = round(took)
    return judgement


def finished_guest(directory: Path) -> analyze.Judgement | None:
    """The judgement of a guest of the interrupted run that ended with a result (None: it must run again)."""
    took = run_record.finished_seconds(directory)
    return None if took is None else judge_guest(directory, took, plot=not (directory / "plot.png").exists())


if __name__ == "__main__":
    raise SystemExit(main())
