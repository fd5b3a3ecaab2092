"""docs/node_exporter.md against the real thing: every node_exporter series and flag it names exists in Debian's
prometheus-node-exporter (its output on this host, its --help), every kmem-exporter series and flag in
kmem-exporter's, with the labels the page gives."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from functools import lru_cache
from typing import Iterator

import pytest

from conftest import PROJECT, WAIT_SECONDS, is_root, require_tool, run_exporter
from metrics_text import all_collectors, series_values
from tcp import listening_port

pytestmark = pytest.mark.live

PAGE = PROJECT / "docs" / "node_exporter.md"
NAME = re.compile(r"`((?:node|kmem|process|python)_[a-z_{}<>*,. ]+?)`")


def expand(written: str) -> Iterator[tuple[str, frozenset[str] | None]]:
    """(name pattern, label names or None) for a series as the page writes it: `a_{x,y}_b` stands for a_x_b and
    a_y_b, a final `{l1, l2}` for the labels, `<field>` and `*` for any name part."""
    match = re.fullmatch(r"(.*?)(?:\{([a-z_, ]+)\})?", written)
    assert match
    stem, labels = match.group(1), match.group(2)
    label_set = frozenset(l.strip() for l in labels.split(",")) if labels else None
    alternatives = re.search(r"\{([^}]+)\}", stem)
    if alternatives:
        for choice in alternatives.group(1).split(","):
            yield from expand(stem[:alternatives.start()] + choice.strip() + stem[alternatives.end():]
                              + (f"{{{labels}}}" if labels else ""))
        return
    pattern = re.escape(stem).replace(re.escape("*"), "[A-Za-z0-9_]*")
    pattern = re.sub(r"<[a-z]+>", "[a-z_]+", pattern.replace("\\<", "<").replace("\\>", ">"))
    yield pattern, label_set


def written_series(prefix: str) -> list[tuple[str, frozenset[str] | None]]:
    found = [item for written in NAME.findall(PAGE.read_text()) if written.startswith(prefix)
             for item in expand(written)]
    assert found, f"the page names no {prefix}* series"
    return found


@lru_cache(maxsize=None)
def node_exporter_series() -> frozenset[tuple[str, frozenset[str]]]:
    """Series names and label names that node_exporter serves on this host with the overlapping collectors on."""
    assert is_root(), "node_exporter's slabinfo collector reads the root-only /proc/slabinfo"
    process = subprocess.Popen(
        [require_tool("prometheus-node-exporter"), "--web.listen-address=127.0.0.1:0",
         "--collector.buddyinfo", "--collector.zoneinfo", "--collector.slabinfo", "--collector.cgroups",
         "--collector.sysctl", "--collector.sysctl.include=vm.min_free_kbytes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = listening_port(process, what="node_exporter")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT_SECONDS) as response:
            text = response.read().decode()
    finally:
        process.terminate()
        process.wait(timeout=WAIT_SECONDS)
    return frozenset((name, frozenset(labels)) for name, labels in _names(text))


@lru_cache(maxsize=None)
def kmem_exporter_series() -> frozenset[tuple[str, frozenset[str]]]:
    result = run_exporter("scrape", *all_collectors())
    assert result.stdout
    return frozenset((name, frozenset(labels)) for name, labels in _names(result.stdout))


def _names(text: str) -> Iterator[tuple[str, list[str]]]:
    for name, labels in series_values(text):
        yield name, [label for label, _ in labels]


def check(written: list[tuple[str, frozenset[str] | None]], served: frozenset[tuple[str, frozenset[str]]]) -> None:
    for pattern, labels in written:
        matching = [served_labels for name, served_labels in served if re.fullmatch(pattern, name)]
        assert matching, f"no series {pattern}"
        if labels is not None:
            assert labels in matching, f"{pattern}: labels {sorted(labels)} not among {matching}"


def test_every_node_exporter_series_the_page_names_is_served() -> None:
    check(written_series("node_"), node_exporter_series())


def test_every_kmem_exporter_series_the_page_names_is_served() -> None:
    check(written_series("kmem_"), kmem_exporter_series())


def test_the_page_expansion_is_understood() -> None:
    assert list(expand("node_zoneinfo_{min,low,high}_pages")) == [
        ("node_zoneinfo_min_pages", None), ("node_zoneinfo_low_pages", None), ("node_zoneinfo_high_pages", None)]
    assert list(expand("node_buddyinfo_blocks{node, zone, size}")) == [
        ("node_buddyinfo_blocks", frozenset({"node", "zone", "size"}))]
    assert [p for p, _ in expand("node_nf_conntrack_stat_*")] == ["node_nf_conntrack_stat_[A-Za-z0-9_]*"]


def flags(help_text: str) -> set[str]:
    return set(re.findall(r"--(?:\[no-\])?([a-z][a-z0-9_.-]+)", help_text))


def test_every_flag_the_page_gives_exists() -> None:
    text = PAGE.read_text()
    node_help = subprocess.run([require_tool("prometheus-node-exporter"), "--help"], capture_output=True,
                               text=True, timeout=60)
    node_flags = flags(node_help.stdout + node_help.stderr)
    kmem_flags = flags(run_exporter("--help").stdout)
    commands = re.findall(r"^(prometheus-node-exporter|kmem-exporter) ((?:.*\\\n)*.*)$", text, re.M)
    assert {c for c, _ in commands} == {"prometheus-node-exporter", "kmem-exporter"}
    for command, arguments in commands:
        known = node_flags if command == "prometheus-node-exporter" else kmem_flags
        for flag in re.findall(r"--(?:no-)?([a-z][a-z0-9_.-]+)", arguments):
            assert flag in known, f"{command} has no --{flag}"
    for flag in re.findall(r"`--(?:no-)?([a-z][a-z0-9_.-]+)", text):
        assert flag in node_flags | kmem_flags, flag
