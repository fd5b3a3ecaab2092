"""The exporter as a lab guest serves it: `python -m lab.guest.exporter SCALE [kmem-exporter options]`.

The same program as `kmem-exporter` (kmem_exporter.cli), with one thing put on the lab's clock, as the rules are
(lab/rules.py): the pause after a background pass. The exporter keeps a background collector to 0.2% of a core, up
to a 5-minute pause (kmem_exporter.collectors.background), and the memory cgroup walk to 2% from 80% of the IDs in
use (kmem_exporter.collectors.memcg); with one lab second standing for SCALE field seconds that pause is SCALE times
shorter here, and the shares SCALE times larger. Unscaled, the walk over 65,535 memory
cgroups (several seconds under TCG) would be followed by a 5-minute pause: 5 field hours in the lab's time.
"""

from __future__ import annotations

import sys

from kmem_exporter import cli
from kmem_exporter.collectors import background, memcg


def main(argv: list[str]) -> int:
    scale = float(argv[0])
    background.MAX_BACKGROUND_PAUSE /= scale
    background.BACKGROUND_CPU_SHARE *= scale
    memcg.NEAR_THE_LIMIT_CPU_SHARE *= scale
    return cli.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
