"""The status page's pieces without a server: its charts are well-formed SVG whose bars stay inside the chart and
follow the numbers (property-based), and the page says what it cannot draw."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from hypothesis import given
from hypothesis import strategies as st

from kmem_exporter.report.findings import judge
from kmem_exporter.report.state import read_state
from kmem_exporter.report.thresholds import thresholds
from kmem_exporter.web import svg
from kmem_exporter.web.status_page import PageLinks, render_page

SVG = "{http://www.w3.org/2000/svg}"
orders = st.integers(min_value=0, max_value=20)
counts = st.dictionaries(orders, st.integers(min_value=0, max_value=10 ** 9).map(float), min_size=1, max_size=21)
indices = st.dictionaries(orders, st.one_of(st.just(-1.0), st.floats(min_value=0, max_value=1)), min_size=1,
                          max_size=21)


def bars(chart: str) -> list[ElementTree.Element]:
    root = ElementTree.fromstring(chart)  # well-formed, or this raises
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    for element in root.iter(f"{SVG}rect"):
        x, y = float(element.get("x", 0)), float(element.get("y", 0))
        w, h = float(element.get("width", 0)), float(element.get("height", 0))
        assert 0 <= x and x + w <= width + 0.1 and 0 <= y and y + h <= height + 0.1 and w >= 0 and h >= 0
    return [e for e in root.iter(f"{SVG}rect") if e.get("class") == "bar"]


@given(counts, orders)
def test_free_blocks_bars_follow_the_counts(blocks: dict[int, float], watched: int) -> None:
    chart = svg.free_blocks_chart(blocks, watched, "a <zone> & more")
    drawn = bars(chart)
    assert len(drawn) == sum(1 for count in blocks.values() if count > 0)
    heights = [float(bar.get("height", 0)) for bar in drawn]
    nonzero = [count for _, count in sorted(blocks.items()) if count > 0]
    for (count_a, height_a) in zip(nonzero, heights):
        for (count_b, height_b) in zip(nonzero, heights):
            if count_a <= count_b:
                assert height_a <= height_b  # more blocks, a bar as high or higher
            if 2 * count_a <= count_b:
                assert height_a < height_b  # twice as many: visibly higher on the log scale
    assert chart.count('class="watched-order"') == (1 if watched in blocks else 0)


@given(indices, st.floats(min_value=0, max_value=1), orders)
def test_extfrag_bars_follow_the_index(index: dict[int, float], limit: float, watched: int) -> None:
    drawn = bars(svg.extfrag_chart(index, limit, watched, "zone"))
    assert len(drawn) == sum(1 for value in index.values() if value >= 0)
    values = [value for _, value in sorted(index.items()) if value >= 0]
    for bar, value in zip(drawn, values):
        assert abs(float(bar.get("height", 0)) - svg.PLOT_H * value) <= 0.1  # a linear scale from 0 to 1
        assert (bar.get("fill") == svg.BAD) is (value > limit)


@given(st.floats(min_value=0, max_value=70000), st.floats(min_value=1, max_value=70000))
def test_usage_bar_stays_inside(used: float, limit: float) -> None:
    (bar,) = bars(svg.usage_bar(used, limit, 0.8, 0.95, "memcg"))
    assert float(bar.get("width", 0)) <= 920


def test_a_page_with_nothing_to_judge() -> None:
    state = read_state([], {})
    page = render_page(PageLinks("/metrics", ["buddyinfo"]), state, judge(state, thresholds()), thresholds(), None)
    assert "Verdict: unknown" in page and "Nothing to judge" in page
    assert "<svg" not in page and 'href="/metrics"' in page and "<li>buddyinfo</li>" in page
