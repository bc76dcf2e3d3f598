"""Charts people can open anywhere: inline SVG (no scripts, no network), shared by the eval report
and the cost report."""

from __future__ import annotations

from html import escape

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #e4e7ec;padding:.35rem .5rem;text-align:left;vertical-align:top}
.ok{color:#137333}.bad{color:#b3261e}.muted{color:#667085}pre{white-space:pre-wrap;margin:0;max-height:12rem;overflow:auto}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #e4e7ec;border-radius:8px;padding:.6rem 1rem}
.card b{display:block;font-size:1.3rem}"""


def bars(
    rows: list[tuple[str, float]],
    *,
    width: int = 640,
    unit: str = "%",
    labels: list[str] | None = None,
    fill: str | None = None,
) -> str:
    """Horizontal bars, values in 0..1 (``labels`` overrides the text after each bar; ``fill`` the
    pass-rate colours)."""
    height = 24 * len(rows) + 8
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="bar chart">']
    for i, (label, value) in enumerate(rows):
        y = 4 + i * 24
        w = max(0.0, min(1.0, value)) * (width - 260)
        colour = fill or ("#137333" if value >= 0.8 else ("#b58100" if value >= 0.5 else "#b3261e"))
        parts.append(f'<text x="0" y="{y + 15}" font-size="12">{escape(label[:30])}</text>')
        parts.append(f'<rect x="200" y="{y}" width="{w:.1f}" height="18" fill="{colour}" rx="3"/>')
        shown = labels[i] if labels is not None else (f"{value:.0%}" if unit == "%" else f"{value:.2f}")
        parts.append(f'<text x="{205 + w:.1f}" y="{y + 14}" font-size="12">{shown}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(scores: list[float], *, bins: int = 10, width: int = 640, height: int = 140) -> str:
    counts = [0] * bins
    for s in scores:
        counts[min(bins - 1, int(max(0.0, min(1.0, s)) * bins))] += 1
    top = max(counts) or 1
    bar = width / bins
    parts = [f'<svg width="{width}" height="{height + 20}" role="img" aria-label="score histogram">']
    for i, c in enumerate(counts):
        h = c / top * height
        parts.append(
            f'<rect x="{i * bar + 2:.1f}" y="{height - h:.1f}" width="{bar - 4:.1f}" height="{h:.1f}" fill="#3d5afe"/>'
        )
        parts.append(f'<text x="{i * bar + bar / 2 - 10:.1f}" y="{height + 14}" font-size="11">{i / bins:.1f}</text>')
        if c:
            parts.append(f'<text x="{i * bar + bar / 2 - 4:.1f}" y="{height - h - 3:.1f}" font-size="11">{c}</text>')
    parts.append("</svg>")
    return "".join(parts)


def sparkline(values: list[float], *, width: int = 120, height: int = 24, label: str = "trend") -> str:
    """A small inline line of ``values`` (oldest first), scaled to its own peak."""
    if not values:
        return ""
    peak = max(values) or 1.0
    step = width / max(1, len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (v / peak) * (height - 4):.1f}" for i, v in enumerate(values))
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(label)}">'
        f'<polyline points="{points}" fill="none" stroke="#b3261e" stroke-width="1.5"/></svg>'
    )


def columns(
    points: list[tuple[str, float]],
    *,
    title: str,
    shown: list[str] | None = None,
    width: int = 360,
    height: int = 110,
    fill: str = "#1a73e8",
) -> str:
    """A small time series as vertical columns, oldest first: ``points`` are (bucket label, value),
    ``shown`` the text each column's tooltip and the peak label use. Empty buckets are gaps."""
    if not points:
        return ""
    texts = shown or [f"{v:g}" for _, v in points]
    peak = max(v for _, v in points) or 1.0
    step = width / len(points)
    top = texts[max(range(len(points)), key=lambda i: points[i][1])]
    parts = [
        f'<svg class="series" width="{width}" height="{height + 34}" viewBox="0 0 {width} {height + 34}" role="img" '
        f'aria-label="{escape(title)}: {len(points)} buckets from {escape(points[0][0])} to {escape(points[-1][0])}, '
        f'peak {escape(top)}"><text x="0" y="12" font-size="12" font-weight="600">{escape(title)}</text>'
        f'<text x="{width}" y="12" font-size="11" text-anchor="end" fill="#57606a">peak {escape(top)}</text>'
    ]
    for i, (label, value) in enumerate(points):
        h = max(0.0, value) / peak * height
        parts.append(
            f'<rect x="{i * step + 1:.1f}" y="{18 + height - h:.1f}" width="{max(1.0, step - 2):.1f}" height="{h:.1f}" '
            f'fill="{fill}"><title>{escape(label)}: {escape(texts[i])}</title></rect>'
        )
    parts.append(
        f'<text x="0" y="{height + 32}" font-size="11" fill="#57606a">{escape(points[0][0])}</text>'
        f'<text x="{width}" y="{height + 32}" font-size="11" text-anchor="end" fill="#57606a">{escape(points[-1][0])}'
        "</text></svg>"
    )
    return "".join(parts)


def band_series(
    values: list[float | None],
    *,
    title: str,
    band: tuple[float, float] | None = None,
    split: int | None = None,
    marks: list[tuple[int, str]] | None = None,
    labels: tuple[str, str] = ("", ""),
    fmt: str = "{:.3g}",
    width: int = 560,
    height: int = 120,
) -> str:
    """A signal over time as a line: the reference's band shaded, the window after ``split`` (the
    reference before it) on a tinted ground, and change points as labelled vertical rules. Empty
    buckets break the line."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    if band is not None:
        lo, hi = min(lo, band[0]), max(hi, band[1])
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 if lo else -0.5, hi + 0.5 if hi else 0.5
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    step = width / max(1, len(values) - 1)
    top = 18

    def y(v: float) -> float:
        return top + height - (v - lo) / (hi - lo) * height

    last = fmt.format(known[-1])
    parts = [
        f'<svg class="series" width="{width}" height="{height + 36}" viewBox="0 0 {width} {height + 36}" role="img" '
        f'aria-label="{escape(title)}: {len(values)} buckets, latest {escape(last)}">'
        f'<text x="0" y="12" font-size="12" font-weight="600">{escape(title)}</text>'
        f'<text x="{width}" y="12" font-size="11" text-anchor="end" fill="#57606a">latest {escape(last)}</text>'
    ]
    if split is not None and 0 <= split < len(values):
        x = split * step
        parts.append(f'<rect class="window" x="{x:.1f}" y="{top}" width="{width - x:.1f}" height="{height}" '
                     'fill="#fff8e1"><title>the window</title></rect>')  # fmt: skip
    if band is not None:
        y1, y0 = y(band[1]), y(band[0])
        shown = f"{fmt.format(band[0])} – {fmt.format(band[1])}"
        parts.append(
            f'<rect class="band" x="0" y="{y1:.1f}" width="{width}" height="{max(1.0, y0 - y1):.1f}" '
            f'fill="#e8f0fe"><title>reference band {escape(shown)}</title></rect>'
        )
    for i, text in marks or []:
        x = i * step
        parts.append(
            f'<line class="mark" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + height}" stroke="#b3261e" '
            f'stroke-dasharray="3,2"><title>{escape(text)}</title></line>'
        )
    runs: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            runs.append([])
        else:
            runs[-1].append(f"{i * step:.1f},{y(v):.1f}")
    for points in runs:
        if len(points) > 1:
            parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#1a73e8" stroke-width="1.5"/>')
        elif points:
            cx, cy = points[0].split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="1.8" fill="#1a73e8"/>')
    parts.append(
        f'<text x="0" y="{height + 34}" font-size="11" fill="#57606a">{escape(labels[0])}</text>'
        f'<text x="{width}" y="{height + 34}" font-size="11" text-anchor="end" fill="#57606a">'
        f"{escape(labels[1])}</text></svg>"
    )
    return "".join(parts)
