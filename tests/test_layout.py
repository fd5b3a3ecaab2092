"""The package's shape, as the README's Development section describes it: small modules, no import circles (imports
made only for type checking included), each room importing only what its job needs, and short lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import PROJECT

PACKAGE = PROJECT / "exporter" / "kmem_exporter"
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """The package's modules that importing `name` runs first: every `import` and `from ... import` anywhere in it
    (functions and `if TYPE_CHECKING:` blocks included), with the packages above each."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                       for alias in node.names]
        for target in targets:
            parts = target.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in MODULES)
    found.discard(name)
    package = name.rpartition(".")[0]
    return {m for m in found if not (m == package or name.startswith(f"{m}."))}  # a module's own packages


GRAPH = {name: imported_modules(name) for name in MODULES}


def find_cycle() -> list[str]:
    """One import circle among the package's modules, as a path that ends where it starts, or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for successor in sorted(GRAPH[node]):
            if state.get(successor) == 1:
                return path[path.index(successor):] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(GRAPH):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_the_graph_sees_imports() -> None:
    """The checks below would pass on an empty graph: make sure it holds the imports it should."""
    assert "kmem_exporter.collectors" in GRAPH["kmem_exporter.config"]
    assert "kmem_exporter.web.config" in GRAPH["kmem_exporter.web.middleware"]
    assert "kmem_exporter.parsers.slabinfo" in GRAPH["kmem_exporter.parsers.slab_fold"]


def test_no_import_circles() -> None:
    assert find_cycle() == []


def test_a_circle_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "kmem_exporter.parsers", GRAPH["kmem_exporter.parsers"] | {"kmem_exporter.config"})
    cycle = find_cycle()
    assert cycle and cycle[0] == cycle[-1] and "kmem_exporter.parsers" in cycle


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_300_lines(name: str) -> None:
    assert len(MODULES[name].read_text().splitlines()) <= MAX_LINES


def rooms(name: str) -> set[str]:
    """The subpackages (or top-level modules) that `name` imports from."""
    return {m.split(".")[1] for m in GRAPH[name]}


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith("kmem_exporter.parsers")])
def test_parsers_are_pure(name: str) -> None:
    """A parser never opens a file and knows nothing of Prometheus: text in, dataclasses out."""
    assert rooms(name) <= {"parsers"}
    source = MODULES[name].read_text()
    assert "prometheus_client" not in source and "open(" not in source and "import os" not in source


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith(("kmem_exporter.collectors",
                                                                       "kmem_exporter.reading"))])
def test_kernel_side_knows_nothing_of_http(name: str) -> None:
    assert not rooms(name) & {"web", "cli", "scrape", "config"}
    assert "aiohttp" not in MODULES[name].read_text()


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith("kmem_exporter.web")])
def test_http_side_knows_nothing_of_kernel_files(name: str) -> None:
    assert not rooms(name) & {"parsers", "collectors"}


def test_readers_live_in_reading() -> None:
    """Threads that read kernel devices are readers, not collectors."""
    assert "kmem_exporter.reading.kmsg_reader" in MODULES
    assert not [n for n in MODULES if n.startswith("kmem_exporter.collectors") and n.endswith("_reader")]


MAX_LINE_LENGTH = 120
SOURCES = [path for part in ("exporter", "tests", "lab", "benchmarks", "mixin", "deploy")
           for path in sorted((PROJECT / part).rglob("*.py"))]


def test_no_line_over_120_characters() -> None:
    long = [f"{path.relative_to(PROJECT)}:{number}" for path in SOURCES
            for number, line in enumerate(path.read_text().splitlines(), 1) if len(line) > MAX_LINE_LENGTH]
    assert SOURCES and not long
