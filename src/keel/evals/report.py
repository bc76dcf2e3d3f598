"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no network) with the
summary, the gate, deltas vs the baseline, per-check pass rates, the score distribution and the worst
cases with their inputs, outputs and reasons."""

from __future__ import annotations

from html import escape
from pathlib import Path

from keel.charts import CSS, bars, histogram
from keel.evals.gate import MetricDelta, Outcome, compare


def write_html(
    outcomes: list[Outcome], path: Path, *, comparison: list[list[MetricDelta]] | None = None, worst: int = 10
) -> None:
    """One run's report, or a matrix's: the variants side by side, then each one's section."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(outcomes, comparison=comparison, worst=worst), encoding="utf-8")


def render_html(outcomes: list[Outcome], *, comparison: list[list[MetricDelta]] | None = None, worst: int = 10) -> str:
    """The report as one HTML document (what ``write_html`` saves and the dashboard embeds)."""
    first = outcomes[0].run
    html = [
        f"<!doctype html><meta charset=utf-8><title>keel eval {escape(first.suite)}</title><style>{CSS}</style>",
        f"<h1>Eval <code>{escape(first.suite)}</code> → feature <code>{escape(first.feature)}</code></h1>",
    ]
    if len(outcomes) > 1:
        html.extend(_matrix(outcomes, comparison or compare(outcomes)))
    for outcome in outcomes:
        html.extend(_section(outcome, worst, heading=len(outcomes) > 1))
    return "\n".join(html)


def _gate_ok(outcome: Outcome) -> bool:
    s = outcome.run.summary
    return all(r.passed for r in outcome.rules) and not s.errors and not s.partial and s.cases > 0


def _matrix(outcomes: list[Outcome], comparison: list[list[MetricDelta]]) -> list[str]:
    checks = sorted({c for o in outcomes for c in o.run.summary.check_scores})
    head = "".join(f"<th>{escape(c)}" for c in checks)
    rows = [
        "<h2>Matrix</h2><table><tr><th>variant<th>pass rate<th>Δ vs first (95%)<th>mean score"
        f"{head}<th>cost<th>p95<th>gate"
    ]
    for o, changes in zip(outcomes, comparison, strict=True):
        s = o.run.summary
        change = next((d for d in changes if d.metric == "pass rate"), None)
        shown = f"{change.change:+.1%} ({change.low:+.1%} … {change.high:+.1%})" if change else "—"
        cells = "".join(f"<td>{s.check_scores[c]:.2f}" if c in s.check_scores else "<td>—" for c in checks)
        ok = _gate_ok(o)
        rows.append(
            f"<tr><td>{escape(s.variant or 'default')}<td>{s.pass_rate:.1%}<td>{shown}<td>{s.mean_score:.3f}{cells}"
            f"<td>${s.cost_usd:.4f}<td>{f'{s.p95_ms:.0f} ms' if s.p95_ms is not None else '—'}"
            f'<td class="{"ok" if ok else "bad"}">{"passed" if ok else "failed"}'
        )
    rows.append("</table>")
    rows.append(bars([(o.run.summary.variant or "default", o.run.summary.pass_rate) for o in outcomes]))
    return rows


def _section(outcome: Outcome, worst: int, *, heading: bool) -> list[str]:
    run, rules, changes = outcome.run, outcome.rules, outcome.deltas
    s = run.summary
    gate_ok = _gate_ok(outcome)
    cards = [
        ("gate", "passed" if gate_ok else "failed"),
        ("pass rate", f"{s.pass_rate:.1%}"),
        ("cases", f"{s.passed}/{s.cases}"),
        ("mean score", f"{s.mean_score:.3f}"),
        ("errors", str(s.errors)),
        ("cost", f"${s.cost_usd:.4f}"),
        ("judge cost", f"${s.judge_cost_usd:.4f} · {s.judge_calls} calls"),
        ("cached", f"{s.cached} of {s.cases}"),
        ("p95 latency", f"{s.p95_ms:.0f} ms" if s.p95_ms is not None else "—"),
    ]
    checks: dict[str, list[bool]] = {}
    for r in run.results:
        for c in r.checks:
            checks.setdefault(c.check, []).append(c.passed)
    html = [
        f"<h2>Variant {escape(s.variant or 'default')}</h2>" if heading else "",
        f'<p class="muted">run {escape(run.id)} · {"PARTIAL · " if s.partial else ""}{s.cases} cases</p>',
        '<div class="cards">'
        + "".join(
            f'<div class="card">{escape(k)}<b class="{"ok" if k != "gate" or gate_ok else "bad"}">{escape(v)}</b></div>'
            for k, v in cards
        )
        + "</div>",
        "<h3>Gate</h3><table>",
        *(
            f'<tr><td class="{"ok" if r.passed else "bad"}">{"✓" if r.passed else "✗"}</td><td>{escape(r.name)}</td>'
            f"<td>{escape(r.detail)}</td></tr>"
            for r in rules
        ),
        "</table>",
    ]
    if changes:
        html.append(
            "<h3>Change vs the baseline (paired bootstrap, 95%)</h3><table><tr><th>metric<th>change<th>interval<th>"
        )
        for d in changes:
            verdict = "beyond noise" if d.significant else "within noise"
            html.append(f"<tr><td>{escape(d.metric)}<td>{d.change:+.3g}<td>{d.low:+.3g} … {d.high:+.3g}<td>{verdict}")
        html.append("</table>")
    html.append("<h3>Pass rate per check</h3>")
    html.append(bars(sorted(((k, sum(v) / len(v)) for k, v in checks.items()), key=lambda kv: kv[1])))
    html.append("<h3>Case scores</h3>" + histogram([r.score for r in run.results if r.error is None]))
    ranked = sorted(run.results, key=lambda r: (r.error is None, r.passed, r.score))[:worst]
    html.append(f"<h3>Worst {len(ranked)} cases</h3><table><tr><th>case<th>result<th>reasons<th>output")
    for r in ranked:
        if r.error:
            result, reasons = '<span class="bad">error</span>', escape(r.error)
        else:
            result = '<span class="ok">pass</span>' if r.passed else '<span class="bad">fail</span>'
            reasons = "<br>".join(escape(f"{c.check}: {c.reason}") for c in r.checks if not c.passed) or "—"
        html.append(f"<tr><td>{escape(r.case_id)}<br><span class=muted>{r.score:.2f}</span><td>{result}<td>{reasons}"
                    f"<td><pre>{escape(r.output[:2000])}</pre>")  # fmt: skip
    html.append("</table>")
    return html
