"""The kernel lab's corpus step (lab/corpus.py): one line of each kind per kernel goes into the kernel-log corpus,
and a kind a kernel already has there is not added again with another time stamp or pid."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT

sys.path.insert(0, str(PROJECT))
from lab import corpus  # noqa: E402

KERNEL = "6.1.0-57-amd64"
FAILURE = "[  129.643366] python: page allocation failure: order:4, mode:0xcc0(GFP_KERNEL), nodemask=(null)"
AGAIN = "[  131.000001] python: page allocation failure: order:4, mode:0xcc0(GFP_KERNEL), nodemask=(null)"
FULL = "[  278.781766] nf_conntrack: nf_conntrack: table full, dropping packet"


def test_a_kind_is_added_once_per_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = tmp_path / "lines.yaml"
    lines.write_text(yaml.safe_dump([{"line": "kernel: foo: page allocation failure: order:5, mode:0xd0",
                                      "source": "a report", "kernel": "4.4", "event": "page_allocation_failure",
                                      "order": "5"}]))
    monkeypatch.setattr(corpus, "CORPUS", lines)
    run = tmp_path / "run"
    for scenario, text in (("fragmentation", f"{FAILURE}\n{AGAIN}\n"), ("conntrack", f"{FULL}\n{FULL}\n")):
        (run / KERNEL / scenario).mkdir(parents=True)
        (run / KERNEL / scenario / "kernel.log").write_text(text)
    assert corpus.main([str(run)]) == 0
    added = yaml.safe_load(lines.read_text())[1:]
    assert [(e["line"], e["kernel"], e["event"], e.get("order")) for e in added] == [
        (FULL, KERNEL, "nf_conntrack_table_full", None), (FAILURE, KERNEL, "page_allocation_failure", "4")]
    # The same run again, or another with new time stamps: nothing new for this kernel.
    (run / KERNEL / "fragmentation" / "kernel.log").write_text(f"{AGAIN}\n")
    assert corpus.main([str(run)]) == 0
    assert len(yaml.safe_load(lines.read_text())) == 3
