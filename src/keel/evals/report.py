"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no network) with the
summary, the gate, deltas vs the baseline, per-check pass rates, the score distribution and the worst
cases with their inputs, outputs and reasons."""

from __future__ import annotations

from html import escape
from pathlib import Path

from keel.evals.runner import Delta, EvalRun, Rule

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #e4e7ec;padding:.35rem .5rem;text-align:left;vertical-align:top}
.ok{color:#137333}.bad{color:#b3261e}.muted{color:#667085}pre{white-space:pre-wrap;margin:0;max-height:12rem;overflow:auto}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #e4e7ec;border-radius:8px;padding:.6rem 1rem}
.card b{display:block;font-size:1.3rem}"""


def _bars(rows: list[tuple[str, float]], *, width: int = 640, unit: str = "%") -> str:
    """Horizontal bars, values in 0..1."""
    height = 24 * len(rows) + 8
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="bar chart">']
    for i, (label, value) in enumerate(rows):
        y = 4 + i * 24
        w = max(0.0, min(1.0, value)) * (width - 260)
        colour = "#137333" if value >= 0.8 else ("#b58100" if value >= 0.5 else "#b3261e")
        parts.append(f'<text x="0" y="{y + 15}" font-size="12">{escape(label[:30])}</text>')
        parts.append(f'<rect x="200" y="{y}" width="{w:.1f}" height="18" fill="{colour}" rx="3"/>')
        shown = f"{value:.0%}" if unit == "%" else f"{value:.2f}"
        parts.append(f'<text x="{205 + w:.1f}" y="{y + 14}" font-size="12">{shown}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _histogram(scores: list[float], *, bins: int = 10, width: int = 640, height: int = 140) -> str:
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


def write_html(run: EvalRun, rules: list[Rule], changes: list[Delta], path: Path, *, worst: int = 10) -> None:
    s = run.summary
    gate_ok = all(r.passed for r in rules) and not s.errors and not s.partial
    cards = [
        ("gate", "passed" if gate_ok else "failed"),
        ("pass rate", f"{s.pass_rate:.1%}"),
        ("cases", f"{s.passed}/{s.cases}"),
        ("mean score", f"{s.mean_score:.3f}"),
        ("errors", str(s.errors)),
        ("cost", f"${s.cost_usd:.4f}"),
        ("p95 latency", f"{s.p95_ms:.0f} ms" if s.p95_ms is not None else "—"),
    ]
    checks: dict[str, list[bool]] = {}
    for r in run.results:
        for c in r.checks:
            checks.setdefault(c.check, []).append(c.passed)
    html = [
        f"<!doctype html><meta charset=utf-8><title>keel eval {escape(run.suite)}</title><style>{CSS}</style>",
        f"<h1>Eval <code>{escape(run.suite)}</code> → feature <code>{escape(run.feature)}</code></h1>",
        f'<p class="muted">run {escape(run.id)} · {"PARTIAL · " if s.partial else ""}{s.cases} cases</p>',
        '<div class="cards">'
        + "".join(
            f'<div class="card">{escape(k)}<b class="{"ok" if k != "gate" or gate_ok else "bad"}">{escape(v)}</b></div>'
            for k, v in cards
        )
        + "</div>",
        "<h2>Gate</h2><table>",
        *(
            f'<tr><td class="{"ok" if r.passed else "bad"}">{"✓" if r.passed else "✗"}</td><td>{escape(r.name)}</td>'
            f"<td>{escape(r.detail)}</td></tr>"
            for r in rules
        ),
        "</table>",
    ]
    if changes:
        html.append(
            "<h2>Change vs the baseline (paired bootstrap, 95%)</h2><table><tr><th>metric<th>change<th>interval<th>"
        )
        for d in changes:
            verdict = "beyond noise" if d.significant else "within noise"
            html.append(f"<tr><td>{escape(d.metric)}<td>{d.change:+.3g}<td>{d.low:+.3g} … {d.high:+.3g}<td>{verdict}")
        html.append("</table>")
    html.append("<h2>Pass rate per check</h2>")
    html.append(_bars(sorted(((k, sum(v) / len(v)) for k, v in checks.items()), key=lambda kv: kv[1])))
    html.append("<h2>Case scores</h2>" + _histogram([r.score for r in run.results if r.error is None]))
    ranked = sorted(run.results, key=lambda r: (r.error is None, r.passed, r.score))[:worst]
    html.append(f"<h2>Worst {len(ranked)} cases</h2><table><tr><th>case<th>result<th>reasons<th>output")
    for r in ranked:
        if r.error:
            result, reasons = '<span class="bad">error</span>', escape(r.error)
        else:
            result = '<span class="ok">pass</span>' if r.passed else '<span class="bad">fail</span>'
            reasons = "<br>".join(escape(f"{c.check}: {c.reason}") for c in r.checks if not c.passed) or "—"
        html.append(f"<tr><td>{escape(r.case_id)}<br><span class=muted>{r.score:.2f}</span><td>{result}<td>{reasons}"
                    f"<td><pre>{escape(r.output[:2000])}</pre>")  # fmt: skip
    html.append("</table>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(html), encoding="utf-8")
