"""Adds the kernel-log lines a lab run captured to tests/kernel_log_corpus/lines.yaml, with the kernel that
printed them as their source: `python -m lab.corpus RUN_DIR...`. One line of each kind per kernel; lines already
in the corpus are left alone. The event each line must count as is set here from the line's kind, by hand, not by
the exporter's matcher (the corpus test compares the two)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "kernel_log_corpus" / "lines.yaml"
# (kind, pattern, event, whether the line gives an order)
KINDS = [
    ("allocation failure", re.compile(r"page allocation failure: order:(\d+)"), "page_allocation_failure", True),
    ("table full", re.compile(r"nf_conntrack: table full, dropping packet"), "nf_conntrack_table_full", False),
    ("oom victim", re.compile(r"Killed process \d+"), "oom_kill", False),
    ("oom invoked", re.compile(r"invoked oom-killer: "), None, False),
    ("oom constraint", re.compile(r"oom-kill:constraint="), None, False),
    ("oom reaper", re.compile(r"oom_reaper: reaped process \d+"), None, False),
]


def captured(run_dirs: list[Path], held: set[tuple[str, str]]) -> list[dict[str, object]]:
    """One line of each kind per kernel from the runs' kernel logs, but none of a (kernel, kind) in `held`."""
    entries, seen = [], set(held)
    for log in sorted(p for d in run_dirs for p in d.glob("*/*/kernel.log")):
        release = log.parent.parent.name
        for line in log.read_text(errors="replace").splitlines():
            for kind, pattern, event, ordered in KINDS:
                match = pattern.search(line)
                if match and (release, kind) not in seen:
                    seen.add((release, kind))
                    entry: dict[str, object] = {"line": line.strip(),
                                                "source": f"kmem-exporter lab on Debian kernel {release} (docs/lab.md)",
                                                "kernel": release, "event": event}
                    if ordered:
                        entry["order"] = match.group(1)  # a label value, as the other entries write it
                    entries.append(entry)
    return entries


def kinds(line: str) -> set[str]:
    """The kinds of KINDS that line is."""
    return {kind for kind, pattern, _, _ in KINDS if pattern.search(line)}


def main(argv: list[str]) -> int:
    existing = yaml.safe_load(CORPUS.read_text())
    held = {(e["kernel"], kind) for e in existing if "kernel" in e for kind in kinds(e["line"])}
    lines = {e["line"] for e in existing}
    new = [e for e in captured([Path(a) for a in argv], held) if e["line"] not in lines]
    if new:
        text = CORPUS.read_text()
        header = "\n# --- captured by the kernel lab (make lab): Debian kernels under QEMU -----------------------\n"
        if header.strip() not in text:
            text = text.rstrip("\n") + "\n" + header
        text += yaml.safe_dump(new, sort_keys=False, width=1000, allow_unicode=True)
        CORPUS.write_text(text)
    print(f"{len(new)} lines added to {CORPUS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
