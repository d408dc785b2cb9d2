"""Charts as inline SVG markup, built on the server (the view runs no JavaScript).

Every label passes through :func:`html.escape`, so recorded text stays text.  The
returned string is marked safe for Jinja by the caller (``markupsafe.Markup``).
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

COLOURS = {
    "allowed": "#3c9a5f",
    "warned": "#e0a800",
    "denied": "#c0392b",
    "timed_out": "#8e44ad",
    "error": "#555e6e",
}


def stacked_bars(
    buckets: list[str], series: dict[str, list[int]], *, title: str, width: int = 760
) -> Markup:
    """A stacked bar per bucket (e.g. per day), one colour per series (e.g. per result)."""
    height, left, bottom, top = 220, 40, 40, 24
    totals = [sum(values[i] for values in series.values()) for i in range(len(buckets))]
    peak = max(totals, default=0) or 1
    step = (width - left - 10) / max(len(buckets), 1)
    bar = max(step * 0.7, 1.0)
    scale = (height - bottom - top) / peak
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
        f'<text x="{left}" y="14" font-size="12">{escape(title)} (max {peak})</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 5}" y2="{height - bottom}" '
        'stroke="#999"/>',
    ]
    for index, bucket in enumerate(buckets):
        x = left + index * step
        y = float(height - bottom)
        for name, values in series.items():
            value = values[index]
            if not value:
                continue
            h = value * scale
            y -= h
            parts.append(
                f'<rect class="bar bar-{escape(name)}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS.get(name, "#2c6fbb")}">'
                f"<title>{escape(bucket)} {escape(name)}: {value}</title></rect>"
            )
        if len(buckets) <= 16 or index % max(len(buckets) // 8, 1) == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height - bottom + 14}" font-size="10">'
                f"{escape(bucket[5:])}</text>"
            )
    legend_x = left
    for name in series:
        parts.append(
            f'<rect x="{legend_x}" y="{height - 16}" width="10" height="10" '
            f'fill="{COLOURS.get(name, "#2c6fbb")}"/><text x="{legend_x + 14}" '
            f'y="{height - 7}" font-size="11">{escape(name)}</text>'
        )
        legend_x += 90
    parts.append("</svg>")
    return Markup("".join(parts))


def rate_bars(rows: list[tuple[str, float]], *, title: str, width: int = 760) -> Markup:
    """Horizontal bars of a rate (0..1) per label, e.g. compliance per namespace."""
    row_height, left = 20, 200
    height = 24 + row_height * max(len(rows), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
        f'<text x="0" y="14" font-size="12">{escape(title)}</text>',
    ]
    span = width - left - 60
    for index, (label, rate) in enumerate(rows):
        y = 22 + index * row_height
        colour = "#3c9a5f" if rate >= 0.95 else "#e0a800" if rate >= 0.8 else "#c0392b"
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="11">{escape(label[:32])}</text>'
            f'<rect class="rate" x="{left}" y="{y + 2}" width="{max(rate * span, 1):.1f}" '
            f'height="{row_height - 6}" fill="{colour}"/>'
            f'<text x="{left + rate * span + 4:.1f}" y="{y + 13}" font-size="11">'
            f"{rate * 100:.1f}%</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
