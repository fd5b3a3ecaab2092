"""Charts as inline SVG, written on the server: no script, no external asset, readable offline and printable.

Each chart is one <svg> element with a class naming its kind, a <title> and an aria-label, so that a browser, a
screen reader and a test all find it."""

from __future__ import annotations

import html
import math
from typing import Mapping, Optional

WIDTH, HEIGHT = 460, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 26, 40  # the plot's margins: axis labels left and below, the title above
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
BAR, WATCHED, BAD, GOOD, GRID, INK = "#3b6ea8", "#f2c14e", "#c0392b", "#2e8b57", "#d9d9d9", "#222"


def _svg(kind: str, label: str, body: list[str], width: int = WIDTH, height: int = HEIGHT) -> str:
    text = html.escape(label)
    return (f'<svg class="chart {kind}" role="img" aria-label="{text}" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
            f'font-size="12"><title>{text}</title>{"".join(body)}</svg>')


def _text(x: float, y: float, text: str, anchor: str = "middle", size: int = 12, weight: str = "normal",
          fill: str = INK) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" font-weight="{weight}" '
            f'fill="{fill}">{html.escape(text)}</text>')


def _order_axis(orders: list[int], watched: Optional[int]) -> tuple[float, list[str]]:
    """The width of one order's column, and the x axis: order numbers, the watched order's column marked."""
    column = PLOT_W / max(len(orders), 1)
    body = []
    for i, order in enumerate(orders):
        x = LEFT + i * column
        if order == watched:
            body.append(f'<rect class="watched-order" x="{x:.1f}" y="{TOP}" width="{column:.1f}" height="{PLOT_H}" '
                        f'fill="{WATCHED}" fill-opacity="0.35" stroke="{WATCHED}" stroke-width="2"/>')
            body.append(_text(x + column / 2, TOP - 6, f"watched: {order}", size=11, weight="bold"))
        weight = "bold" if order == watched else "normal"
        body.append(_text(x + column / 2, TOP + PLOT_H + 15, str(order), weight=weight))
    body.append(_text(LEFT + PLOT_W / 2, HEIGHT - 6, "order (block of 2^order pages)", size=11))
    body.append(f'<line x1="{LEFT}" y1="{TOP + PLOT_H}" x2="{LEFT + PLOT_W}" y2="{TOP + PLOT_H}" stroke="{INK}"/>')
    return column, body


def free_blocks_chart(blocks: Mapping[int, float], watched: int, label: str) -> str:
    """Free blocks by order on a log scale (a column without bar: none free), the watched order marked."""
    orders = sorted(blocks)
    decades = max(1, math.ceil(math.log10(max([1.0, *blocks.values()]))))
    column, body = _order_axis(orders, watched if watched in blocks else None)
    floor = 0.3  # the plot's bottom is 10^-0.3 blocks, so that a single free block still gets a bar

    def y(count: float) -> float:
        return TOP + PLOT_H - PLOT_H * (math.log10(count) + floor) / (decades + floor)

    for decade in range(decades + 1):
        level = y(10 ** decade)
        body.append(f'<line x1="{LEFT}" y1="{level:.1f}" x2="{LEFT + PLOT_W}" y2="{level:.1f}" stroke="{GRID}"/>')
        body.append(_text(LEFT - 6, level + 4, _count(10 ** decade), "end", 11))
    for i, order in enumerate(orders):
        count = blocks[order]
        if count > 0:
            x = LEFT + i * column + column * 0.18
            body.append(f'<rect class="bar" x="{x:.1f}" y="{y(count):.1f}" width="{column * 0.64:.1f}" '
                        f'height="{TOP + PLOT_H - y(count):.1f}" fill="{BAR}"><title>order {order}: '
                        f'{count:.0f} free blocks</title></rect>')
        else:
            body.append(_text(LEFT + (i + 0.5) * column, TOP + PLOT_H - 4, "0", size=10, fill=BAD))
    return _svg("free-blocks", label, body)


def extfrag_chart(index: Mapping[int, float], limit: float, watched: int, label: str) -> str:
    """The extfrag index by order (0..1; -1, a free block of that order exists, is drawn as a tick), with the limit
    above which a failing allocation is blamed on fragmentation."""
    orders = sorted(index)
    column, body = _order_axis(orders, watched if watched in index else None)

    def y(value: float) -> float:
        return TOP + PLOT_H - PLOT_H * min(max(value, 0.0), 1.0)

    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(f'<line x1="{LEFT}" y1="{y(tick):.1f}" x2="{LEFT + PLOT_W}" y2="{y(tick):.1f}" stroke="{GRID}"/>')
        body.append(_text(LEFT - 6, y(tick) + 4, f"{tick:g}", "end", 11))
    for i, order in enumerate(orders):
        value = index[order]
        x = LEFT + i * column + column * 0.18
        if value < 0:
            body.append(f'<rect class="free" x="{x:.1f}" y="{TOP + PLOT_H - 4}" width="{column * 0.64:.1f}" '
                        f'height="4" fill="{GOOD}"><title>order {order}: a free block exists</title></rect>')
            continue
        body.append(f'<rect class="bar" x="{x:.1f}" y="{y(value):.1f}" width="{column * 0.64:.1f}" '
                    f'height="{TOP + PLOT_H - y(value):.1f}" fill="{BAD if value > limit else BAR}"><title>order '
                    f'{order}: extfrag index {value:.3f}</title></rect>')
    body.append(f'<line class="limit" x1="{LEFT}" y1="{y(limit):.1f}" x2="{LEFT + PLOT_W}" y2="{y(limit):.1f}" '
                f'stroke="{BAD}" stroke-width="2" stroke-dasharray="6 4"/>')
    body.append(f'<line x1="{LEFT}" y1="{TOP - 10}" x2="{LEFT + 22}" y2="{TOP - 10}" stroke="{BAD}" stroke-width="2" '
                'stroke-dasharray="6 4"/>')  # the limit's legend, above the plot where no bar can hide it
    body.append(_text(LEFT + 26, TOP - 6, f"limit {limit:.3f}", "start", 11, "bold", BAD))
    return _svg("extfrag", label, body)


def usage_bar(used: float, limit: float, warning: float, critical: float, label: str) -> str:
    """A horizontal bar of `used` against `limit`, with the warning and critical shares marked."""
    width, height, left, bar_w = 940, 64, 10, 920
    share = min(used / limit, 1.0) if limit else 0.0
    color = BAD if share > critical else WATCHED if share > warning else GOOD
    body = [f'<rect x="{left}" y="8" width="{bar_w}" height="26" fill="#eee" stroke="{INK}"/>',
            f'<rect class="bar" x="{left}" y="8" width="{max(bar_w * share, 3 if used else 0):.1f}" height="26" '
            f'fill="{color}"/>']  # at least a sliver when any is in use
    for mark, name in ((warning, "warning"), (critical, "critical")):
        x = left + bar_w * mark
        body.append(f'<line class="{name}" x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="38" stroke="{INK}" '
                    'stroke-width="2" stroke-dasharray="4 3"/>')
        body.append(_text(x, 52, f"{name} {mark:.0%}", size=11))
    body.append(_text(left, 60, f"{used:.0f} of {limit:.0f} ({share:.1%})", "start", 12, "bold"))
    return _svg("memcg-ids", label, body, width, height)


def _count(value: float) -> str:
    """10000 -> '10k'; axis labels."""
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"
