"""The docs document every flag, config key and collector the exporter has (metrics: test_metric_reference.py), and
the links of the README and the docs pages lead to pages and headings that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import PROJECT
from markdown_links import github_anchors, link_targets
from kmem_exporter.collectors import COLLECTORS
from kmem_exporter.config import ALL_SETTINGS, COLLECTOR_SWITCHES
from kmem_exporter.settings import parse_bool

README = PROJECT / "README.md"
DOCS = PROJECT / "docs"
CONFIGURATION = (DOCS / "configuration.md").read_text()
DEPLOYMENT = (DOCS / "deployment.md").read_text()
# A link to a host that never resolves (RFC 2606): dead wherever the page is read.
DEAD_HOST = re.compile(r"https?://[^/]*\.invalid(/|$)")


def table_rows(heading: str, page: str = CONFIGURATION) -> list[str]:
    """The first cells of the first table after the line of `page` that is `heading`."""
    lines = page[page.index(f"\n{heading}\n"):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip())
    return rows


FLAG_ROWS = table_rows("## Flags and config file") + table_rows("Collector options:")


@pytest.mark.parametrize("setting", [s for s in ALL_SETTINGS if s.key not in COLLECTOR_SWITCHES], ids=lambda s: s.key)
def test_every_setting_has_a_row(setting: object) -> None:
    key = setting.key  # type: ignore[attr-defined]
    flag = f"`--[no-]{key}`" if setting.parse is parse_bool else f"`--{key}`"  # type: ignore[attr-defined]
    assert flag in FLAG_ROWS, f"docs/configuration.md's flag tables have no row {flag}"


def test_no_row_names_a_setting_that_does_not_exist() -> None:
    keys = {s.key for s in ALL_SETTINGS} | {"config.file", "collector.<name>"}
    for row in FLAG_ROWS:
        key = re.fullmatch(r"`--(?:\[no-\])?([\w.<>-]+)`", row)
        assert key is not None and key.group(1) in keys, f"docs/configuration.md documents {row}, which is no setting"


def test_every_collector_is_in_the_collectors_and_privileges_tables() -> None:
    assert sorted(table_rows("Collectors:")) == sorted(f"`{name}`" for name in COLLECTORS)
    privileges = set(table_rows("## Privileges", DEPLOYMENT))
    assert {f"`{name}`" for name in COLLECTORS} <= privileges


def resolves(target: str, page: Path) -> str | None:
    """Why a link of `page` to a file of the project (`path`, `path#anchor` or `#anchor`) leads nowhere, or None."""
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    if not file.is_file() or PROJECT.resolve() not in file.parents:
        return f"{target}: no file {file} in the project"
    if anchor and anchor not in github_anchors(file.read_text()):
        return f"{target}: no heading #{anchor} in {file.relative_to(PROJECT.resolve())}"
    return None


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_relative_links_of_docs_pages_resolve(page: Path) -> None:
    targets = [t for t in link_targets(page.read_text()) if not re.match(r"[a-z]+:", t)]
    assert [problem for t in targets if (problem := resolves(t, page))] == []


def test_readme_links_to_the_project_resolve() -> None:
    """The README links to the docs pages and other files by relative links, which work in a checkout and on a
    repository page; each names a file of the project (and a heading of it), and every docs page is listed."""
    targets = [t for t in link_targets(README.read_text()) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert [problem for t in targets if (problem := resolves(t, PROJECT / "README.md"))] == []
    linked = {t.partition("#")[0] for t in targets}
    assert {f"docs/{page.name}" for page in DOCS.glob("*.md")} <= linked, "a docs page the README does not list"


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_no_link_leads_to_a_host_that_does_not_exist(page: Path) -> None:
    assert [t for t in link_targets(page.read_text()) if DEAD_HOST.match(t)] == []


def test_readme_anchors_resolve() -> None:
    readme = README.read_text()
    anchors = [t[1:] for t in link_targets(readme) if t.startswith("#")]
    assert sorted(set(anchors) - github_anchors(readme)) == []
