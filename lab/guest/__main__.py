"""Inside a lab guest: `python -m lab.guest SCENARIO --out DIR --rules DIR [--module KO] [--profile ci|full]`."""

from __future__ import annotations

import argparse
import traceback
from pathlib import Path
from typing import Any

from lab.guest.conntrack import Conntrack
from lab.guest.fragmentation import Fragmentation
from lab.guest.harness import Lab
from lab.guest.healthy import Healthy
from lab.guest.memcg import Memcg
from lab.guest.oom import Oom

# New online memory cgroups a second in the memcg scenario's phase 2: until mkdir fails in the full run (65,535 IDs,
# 5 to 10 minutes under TCG), to 10,000 in the CI pass (the counts, the silence below the thresholds, the removal).
ONLINE_RATE = 250.0
# The sizes of the CI pass and of the full run; the checks are the same. Both leave 2,000 cgroups dying: under TCG each
# costs a cgroup migration there and back, 13 a second at best (6.12), so more dying cgroups than IDs (66,000) would
# take 85 minutes before phase 2 begins.
PROFILES: dict[str, dict[str, Any]] = {
    "ci": {"frag_hold": 20, "memcg_count": 2000, "memcg_batch": 1000, "online_rate": ONLINE_RATE,
           "online_count": 10000, "nokmem_count": 500, "hold": 20,
           "namespaces": 400, "ns_batch": 200, "table": 1024, "rate": 25.0, "kills": 3, "healthy_minutes": 2},
    "full": {"frag_hold": 40, "memcg_count": 2000, "memcg_batch": 1000, "online_rate": ONLINE_RATE,
             "online_count": None, "nokmem_count": 1000, "hold": 40,
             "namespaces": 5000, "ns_batch": 500, "table": 4096, "rate": 40.0, "kills": 5, "healthy_minutes": 6},
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["fragmentation", "memcg", "memcg-nokmem", "conntrack", "oom", "healthy"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rules", type=Path, required=True)
    parser.add_argument("--module", type=Path)
    parser.add_argument("--hierarchy", choices=["v1", "v2"], default="v2")
    parser.add_argument("--profile", choices=list(PROFILES), default="ci")
    parser.add_argument("--memcg-dying", type=int, help="cgroups the memcg scenario leaves dying")
    parser.add_argument("--memcg-rate", type=float, help="new online cgroups a second in the memcg scenario's phase 2")
    parser.add_argument("--scale", type=float, default=1.0, help="field seconds a lab second stands for")
    args = parser.parse_args()
    size = dict(PROFILES[args.profile])
    if args.memcg_dying is not None:
        size["memcg_count"] = args.memcg_dying
    if args.memcg_rate is not None:
        size["online_rate"] = args.memcg_rate
    lab = Lab(args.out, args.rules, args.scenario, args.scale)
    root = lab.memory_root(args.hierarchy)
    scenario: object
    if args.scenario == "fragmentation":
        scenario = Fragmentation(lab, args.module, order=4, batch=400, pause=1.0, hold=size["frag_hold"])
    elif args.scenario == "memcg":
        scenario = Memcg(lab, root, args.hierarchy, size["memcg_count"], size["memcg_batch"], size["hold"],
                         size["online_rate"], size["online_count"])
    elif args.scenario == "memcg-nokmem":
        scenario = Memcg(lab, root, args.hierarchy, size["nokmem_count"], 500, size["hold"], None)
    elif args.scenario == "conntrack":
        scenario = Conntrack(lab, size["namespaces"], size["ns_batch"], size["table"], size["rate"], size["hold"])
    elif args.scenario == "oom":
        scenario = Oom(lab, root, args.hierarchy, size["kills"])
    else:
        scenario = Healthy(lab, size["healthy_minutes"])
    try:
        lab.start()
        scenario.run()
        if args.scenario == "memcg-nokmem":
            samples = lab.scrape()
            lab.check("booted with cgroup.memory=nokmem: no kmem-enabled cgroup, mode disabled",
                      samples.get("kmem_memcg_kmem_enabled_cgroups") == 0
                      and samples.get('kmem_memcg_kmem_accounting_info{mode="disabled"}') == 1,
                      f"kmem-enabled {samples.get('kmem_memcg_kmem_enabled_cgroups')}")
    except Exception:  # the run's own failure is a result too: written, then the guest ends
        lab.check("the scenario ran to its end", False, traceback.format_exc())
    finally:
        lab.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
