"""Tiny inline-SVG charts: the report must open offline, with no JS or CSS fetched."""
from __future__ import annotations

import math
from html import escape

BAR = "#3b6ea8"
BAR_ALT = "#b0b8c4"
LINE = "#c0392b"


def _num(value: float) -> str:
    if value == 0 or (1e-3 <= abs(value) < 1e6):
        return f"{value:.4g}"
    return f"{value:.2e}"


def histogram(buckets: list[tuple[float, float, float]], width: int = 220, height: int = 56) -> str:
    """Vertical bars for (low, high, count) buckets, with the range written underneath."""
    buckets = [b for b in buckets if b[2] >= 0 and math.isfinite(b[0]) and math.isfinite(b[1])]
    if not buckets:
        return ""
    top = max(b[2] for b in buckets) or 1.0
    step = width / len(buckets)
    bars = []
    for i, (low, high, count) in enumerate(buckets):
        h = (height - 14) * count / top
        bars.append(
            f'<rect x="{i * step + 0.5:.1f}" y="{height - 14 - h:.1f}" width="{max(step - 1, 1):.1f}" height="{h:.1f}" '
            f'fill="{BAR}"><title>{escape(_num(low))} to {escape(_num(high))}: {count:,.0f}</title></rect>'
        )
    labels = (f'<text x="0" y="{height - 2}" font-size="9" fill="#555">{escape(_num(buckets[0][0]))}</text>'
              f'<text x="{width}" y="{height - 2}" font-size="9" fill="#555" text-anchor="end">'
              f'{escape(_num(buckets[-1][1]))}</text>')
    return (f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(bars)}{labels}</svg>')


def hbars(items: list[tuple[str, float]], width: int = 320, row: int = 16, label_width: int = 130,
          maximum: float | None = None, marker: float | None = None, fmt: str = "{:,.0f}",
          compare: list[float | None] | None = None) -> str:
    """Horizontal bars with labels and values; `marker` draws a threshold line, `compare` a baseline bar."""
    if not items:
        return ""
    finite = [v for _, v in items if math.isfinite(v)] + ([marker] if marker is not None else [])
    top = maximum if maximum is not None else (max(finite, default=1.0) or 1.0)
    span = width - label_width - 60
    height = row * len(items) + 4
    parts = []
    for i, (label, value) in enumerate(items):
        y = i * row + 2
        shown = value if math.isfinite(value) else 0.0
        w = max(0.0, span * shown / top)
        parts.append(f'<text x="{label_width - 6}" y="{y + row - 5}" font-size="11" text-anchor="end">'
                     f'{escape(label[:22])}</text>')
        parts.append(f'<rect x="{label_width}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="{BAR}"/>')
        if compare and compare[i] is not None and math.isfinite(compare[i]):
            cw = max(0.0, span * compare[i] / top)
            parts.append(f'<rect x="{label_width}" y="{y + row - 4}" width="{cw:.1f}" height="2" fill="{BAR_ALT}"/>')
        text = fmt.format(value) if math.isfinite(value) else "n/a"
        parts.append(f'<text x="{label_width + w + 4:.1f}" y="{y + row - 5}" font-size="10" fill="#333">'
                     f'{escape(text)}</text>')
    if marker is not None:
        x = label_width + span * marker / top
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="{LINE}" '
                     f'stroke-dasharray="3,2"><title>threshold {marker:g}</title></line>')
    return (f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>')
