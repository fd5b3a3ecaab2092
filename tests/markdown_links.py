"""Links and heading anchors of the project's Markdown pages, as GitHub renders them."""

from __future__ import annotations

import re

# An inline link's target: `[text](target)`, without a title.
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def without_code_blocks(markdown: str) -> str:
    """The text outside fenced code blocks, whose `# comment` lines are no headings and `](x)` no links."""
    return _FENCE.sub("", markdown)


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown document: lower case, punctuation but `-` and `_` dropped,
    spaces made `-`."""
    anchors = set()
    for line in without_code_blocks(markdown).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def link_targets(markdown: str) -> list[str]:
    """Every inline link's target outside code blocks, in order."""
    return _LINK.findall(without_code_blocks(markdown))
