"""Charts drawn on the server as inline SVG: no script, no library, nothing from a CDN.

Colours are presentation attributes and classes (the CSP allows no inline `style`); text is
escaped; each chart scales with its container through its `viewBox`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import escape

from markupsafe import Markup

from services.frontend.numbers import amount, signed

WIDTH = 480
# A longer symbol is shortened on the chart (the full name is in its tooltip).
LABEL_CHARS = 10
PALETTE = ("#2f6fed", "#17a2b8", "#f59f00", "#7048e8", "#e8590c", "#2b8a3e", "#c2255c", "#5f6b7d")


@dataclass(frozen=True, slots=True)
class Slice:
    """One position's share of the value held in a quote currency."""

    label: str
    value: Decimal


@dataclass(frozen=True, slots=True)
class Point:
    """Cumulative realised P&L right after a trade that realised some."""

    at: datetime
    value: Decimal


def _text(x: float, y: float, content: str, *, anchor: str = "start", css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{escape(content)}</text>'


def _date(x: float, y: float, at: datetime, *, anchor: str = "start") -> str:
    """Write the UTC date; static/local-time.js rewrites it in the browser's time zone."""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="muted" '
        f'data-datetime="{at.isoformat()}">{at:%Y-%m-%d}</text>'
    )


def _svg(height: float, title: str, description: str, body: list[str]) -> Markup:
    head = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>"
    )
    # Every piece of text above went through `escape`; numbers are formatted here.
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704  # nosec B704 - all text escaped


def allocation(currency: str, slices: Sequence[Slice]) -> Markup:
    """Draw a bar per position's share of the value held in `currency`, largest first.

    Each row is a line of text (the symbol, its share and value) above a full-width bar, so
    the text never shares a line with a bar that might push it out of the chart.
    """
    shown = sorted((s for s in slices if s.value > 0), key=lambda s: s.value, reverse=True)
    total = sum((s.value for s in shown), Decimal(0))
    row, top, bar = 52, 4, 14
    height = top * 2 + row * max(len(shown), 1)
    body: list[str] = []
    if total <= 0:
        body.append(_text(WIDTH / 2, height / 2 + 5, "Nothing held", anchor="middle", css="muted"))
    for index, item in enumerate(shown):
        share = item.value / total
        y = top + index * row
        colour = PALETTE[index % len(PALETTE)]
        label = (
            item.label if len(item.label) <= LABEL_CHARS else item.label[: LABEL_CHARS - 1] + "…"
        )
        body.append(_text(0, y + 20, label))
        body.append(
            _text(
                WIDTH,
                y + 20,
                f"{share * 100:.1f} % · {amount(item.value)}",
                anchor="end",
                css="muted",
            )
        )
        body.append(
            f"<g><title>{escape(item.label)}: {escape(amount(item.value))} {escape(currency)} "
            f"({share * 100:.1f} %)</title>"
            f'<rect x="0" y="{y + 28}" width="{max(float(share) * WIDTH, 2.0):.1f}" '
            f'height="{bar}" rx="3" fill="{colour}"/></g>'
        )
    return _svg(
        height,
        f"Allocation of the value held in {currency}",
        ", ".join(f"{s.label} {amount(s.value)} {currency}" for s in shown) or "nothing held",
        body,
    )


def realised_over_time(currency: str, points: Sequence[Point]) -> Markup:
    """Draw cumulative realised P&L in `currency` as a step line, with its zero line.

    The highest level is labelled above its line and the lowest below its own, from the left
    edge: a label beside the plot would need a margin as wide as the longest amount.
    """
    height, left, right, top, bottom = 240.0, 6.0, 6.0, 34.0, 58.0
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    values = [p.value for p in points]
    low, high = min([Decimal(0), *values]), max([Decimal(0), *values])
    span = high - low or Decimal(1)
    first, last = points[0].at.timestamp(), points[-1].at.timestamp()
    duration = (last - first) or 1.0

    def x(point: Point) -> float:
        if len(points) == 1:
            return left + plot_w / 2
        return left + (point.at.timestamp() - first) / duration * plot_w

    def y(value: Decimal) -> float:
        return top + float((high - value) / span) * plot_h

    # Realised P&L changes only at a trade: hold the level until the next one.
    path = [f"M{left:.1f},{y(Decimal(0)):.1f}"]
    for point in points:
        path.append(f"H{x(point):.1f}")
        path.append(f"V{y(point.value):.1f}")
    zero = y(Decimal(0))
    body = [
        f'<line x1="{left}" x2="{WIDTH - right}" y1="{zero:.1f}" y2="{zero:.1f}" '
        'class="chart-zero"/>',
        _text(0, top - 10, signed(high), css="muted"),
        _text(0, top + plot_h + 24, signed(low), css="muted"),
        f'<path d="{" ".join(path)}" class="chart-line"/>',
    ]
    # Zero between the two, at the left edge on the side the first step does not take.
    if low < 0 < high and min(zero - top, top + plot_h - zero) >= 30:
        below = points[0].value > 0
        body.append(_text(0, zero + 20 if below else zero - 6, "0", css="muted"))
    for point in points:
        tone = "gain" if point.value > 0 else "loss" if point.value < 0 else "flat"
        body.append(
            f'<circle cx="{x(point):.1f}" cy="{y(point.value):.1f}" r="4" class="dot-{tone}">'
            f"<title>{escape(signed(point.value))} {escape(currency)} after the trade of "
            f"{point.at:%Y-%m-%d %H:%M} UTC</title></circle>"
        )
    body.append(_date(0, height - 8, points[0].at))
    if len(points) > 1:
        body.append(_date(WIDTH, height - 8, points[-1].at, anchor="end"))
    return _svg(
        height,
        f"Realised P&L in {currency} over time",
        f"{len(points)} trades realised P&L; now {signed(values[-1])} {currency}",
        body,
    )
