"""Charts drawn here, as SVG in the page: no script and no charting library to serve, so
the portal works offline and a chart prints and reads without JavaScript. Each chart has a
title and a description for screen readers, and each bar or point a tooltip (``<title>``)
with its exact value; the table beside or below it on the page holds the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from markupsafe import Markup

# Each chart is drawn twice, at two widths in user units, and the style sheet shows one:
# scaled to a phone (~360 px), a 720-unit drawing would print its 11-unit text at 5 px.
WIDE, NARROW = 720, 360
HEIGHT = 200
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 10, 28
PALETTE = ["#2f6db5", "#e08a1e", "#3a9d5d", "#c0392b", "#7d5ba6", "#8c6d31", "#d45f9d",
           "#5a8f8f", "#7f7f7f", "#b5b52f"]
STATE_COLOURS = {"completed": "#3a9d5d", "completed_with_warnings": "#e0a800",
                 "failed": "#c0392b", "cancelled": "#7f7f7f", "running": "#2f6db5",
                 "queued": "#8fb3de", "cancelling": "#a0a0a0"}
Draw = Callable[[int], list[str]]  # the marks of a chart drawn ``width`` units wide


def _chart(chart_id: str, title: str, summary: str, draw: Draw, top: float,
           days: list[str], value: Callable[[float], str], legend: list[tuple[str, str]]
           ) -> Markup:
    """The chart twice (``wide`` for screens, ``narrow`` for phones: the style sheet shows
    one), then its legend as a list, which wraps at any width and reads as text."""
    keys = "".join(
        f'<li><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" '
        f'fill="{colour}"/></svg> {escape(name)}</li>' for name, colour in legend)
    return Markup(_frame(chart_id, "wide", WIDE, title, summary, draw(WIDE), top, days, value)
                  + _frame(f"{chart_id}-narrow", "narrow", NARROW, title, summary,
                           draw(NARROW), top, days, value)
                  + (f'<ul class="chart-legend">{keys}</ul>' if keys else ""))


def _frame(chart_id: str, size: str, width: int, title: str, summary: str, body: list[str],
           top: float, days: list[str], value: Callable[[float], str]) -> str:
    """The SVG around ``body``: y axis to ``top``, the first and last day."""
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [f'<svg id="{escape(chart_id)}" class="chart {size}" viewBox="0 0 {width} '
             f'{HEIGHT}" role="img" aria-labelledby="{escape(chart_id)}-t '
             f'{escape(chart_id)}-d" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{escape(chart_id)}-t">{escape(title)}</title>',
             f'<desc id="{escape(chart_id)}-d">{escape(summary)}</desc>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{width - RIGHT}" '
             f'y2="{TOP + plot_h}" class="axis"/>',
             f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" class="tick">'
             f'{escape(value(top))}</text>',
             f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" class="tick">0</text>']
    if days:
        parts.append(f'<text x="{LEFT}" y="{HEIGHT - BOTTOM + 14}" class="tick">'
                     f'{escape(days[0])}</text>')
        parts.append(f'<text x="{width - RIGHT}" y="{HEIGHT - BOTTOM + 14}" '
                     f'text-anchor="end" class="tick">{escape(days[-1])}</text>')
    return "".join(parts + body + ["</svg>"])


def stacked_bars(chart_id: str, title: str, days: list[str], series: dict[str, list[float]],
                 value: Callable[[float], str], colours: dict[str, str] | None = None
                 ) -> Markup:
    """One bar a day, each series a segment of it, in the order of ``series``."""
    colours = colours or {}
    pick = {name: colours.get(name, PALETTE[n % len(PALETTE)])
            for n, name in enumerate(series)}
    totals = [sum(s[i] for s in series.values()) for i in range(len(days))]
    top = max(totals, default=0) or 1
    plot_h = HEIGHT - TOP - BOTTOM

    def draw(width: int) -> list[str]:
        step = (width - LEFT - RIGHT) / max(len(days), 1)
        gap = 1 if step > 6 else 0
        body = []
        for i, day in enumerate(days):
            y: float = TOP + plot_h
            for name, values in series.items():
                if not values[i]:
                    continue
                h = plot_h * values[i] / top
                y -= h
                body.append(f'<rect x="{LEFT + i * step + gap:.1f}" y="{y:.1f}" '
                            f'width="{max(step - 2 * gap, 1):.1f}" height="{h:.1f}" '
                            f'fill="{pick[name]}"><title>{escape(day)} {escape(name)}: '
                            f'{escape(value(values[i]))}</title></rect>')
        return body

    summary = f"{len(days)} days from {days[0]} to {days[-1]}; " if days else ""
    summary += "; ".join(f"{name}: {value(sum(v))} in all" for name, v in series.items())
    return _chart(chart_id, title, summary, draw, top, days, value, list(pick.items()))


def lines(chart_id: str, title: str, days: list[str],
          series: dict[str, list[float]] | dict[str, list[float | None]],
          value: Callable[[float], str]) -> Markup:
    """One line per series over the days; a day without a value (None) has no point."""
    pick = {name: PALETTE[n % len(PALETTE)] for n, name in enumerate(series)}
    top = max((v for s in series.values() for v in s if v is not None), default=0) or 1
    plot_h = HEIGHT - TOP - BOTTOM

    def draw(width: int) -> list[str]:
        step = (width - LEFT - RIGHT) / max(len(days) - 1, 1)
        body = []
        for name, values in series.items():
            points = [(i, LEFT + i * step, TOP + plot_h - plot_h * v / top, v)
                      for i, v in enumerate(values) if v is not None]
            body.append(f'<polyline fill="none" stroke="{pick[name]}" stroke-width="2" '
                        'points="' + " ".join(f"{x:.1f},{y:.1f}" for _, x, y, _ in points)
                        + '"/>')
            body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{pick[name]}"><title>'
                     f'{escape(days[i])} {escape(name)}: {escape(value(v))}</title></circle>'
                     for i, x, y, v in points]
        return body

    summary = "; ".join(f"{name}: {value(last)} on {days[-1]}"
                        for name, v in series.items() if v and (last := v[-1]) is not None) \
        if days else "no days"
    return _chart(chart_id, title, summary, draw, top, days, value, list(pick.items()))
