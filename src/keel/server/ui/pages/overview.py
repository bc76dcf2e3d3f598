"""Overview: requests, error rate, latency p50/p75/p95, time to first token, tokens and cost over
1 h, 24 h, 7 d or 30 d, split by feature, model, tenant or user; cost per interaction against the
feature's target; spend against each budget. Read from the rollups the trace writer keeps (a month
of traffic is a few thousand rows, whatever the volume) — never a scan of the trace rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keel import charts
from keel.errors import KeelError
from keel.features.spec import load_feature
from keel.server.ui import nav, spend
from keel.server.ui.spend import usd
from keel.store.rollups import DAY, HOUR

if TYPE_CHECKING:
    from keel.server.ui import UI

nav(10, "/ui/overview", "Overview")
#: window → (its length, the bucket its charts draw)
WINDOWS = {"1h": (HOUR, 300), "24h": (DAY, HOUR), "7d": (7 * DAY, 6 * HOUR), "30d": (30 * DAY, DAY)}
SPLITS = ("feature", "model", "tenant", "user")
SHOWN = 50  # values of a split (the busiest)


def routes(ui: UI) -> list[BaseRoute]:
    async def overview(request: Request) -> Response:
        window = ui.window(request, WINDOWS, "24h")
        by = ui.choice(request, "by", SPLITS, "feature")
        length, bucket = WINDOWS[window]
        tenant, now = ui.tenant_for(request), time.time()
        since = now - length
        # users are rolled up by the UTC day: their split covers whole days, their trend (30 d only) a day a point
        trend_bucket = bucket if by != "user" else (DAY if bucket % DAY == 0 else 0)

        def load() -> dict[str, Any]:
            traces = ui.store.traces
            split = _busiest(traces.dashboard(tenant=tenant, since=since, by=by, bucket_s=0))
            shown = [r["value"] for r in split]
            return {
                "total": traces.dashboard(tenant=tenant, since=since, bucket_s=0),
                "series": traces.dashboard(tenant=tenant, since=since, bucket_s=bucket),
                "split": split,
                "trend": traces.dashboard(
                    tenant=tenant, since=since, by=by, bucket_s=trend_bucket, values=shown, percentiles=False
                )
                if trend_bucket
                else [],
            }

        data = await ui.store.db.call(load)
        budgets, left_out = await spend.buckets(ui.settings.budgets, ui.ledger, tenant)
        return ui.render(
            request,
            "overview.html",
            window=window,
            windows=list(WINDOWS),
            by=by,
            splits=SPLITS,
            total=_total(data["total"]),
            charts=_charts(data["series"], since, now, bucket),
            split=_split(ui, data["split"], data["trend"], by, since, now, trend_bucket),
            whole_days=by == "user",
            budgets=budgets[:10],
            has_budgets=bool(ui.settings.budgets),
            more_budgets=max(0, len(budgets) - 10) + left_out,
        )

    return [Route("/ui/overview", ui.page(overview), methods=["GET"])]


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    row = rows[0] if rows else {}
    calls = int(row.get("calls") or 0)
    runs = int(row.get("runs") or 0)
    cost = float(row.get("cost_usd") or 0.0)
    return {
        **row,
        "calls": calls,
        "runs": runs,
        "cost": cost,
        "error_rate": int(row.get("errors") or 0) / calls if calls else 0.0,
        "per_run": cost / runs if runs else None,
    }


def _stamps(since: float, now: float, bucket: int) -> list[int]:
    first = int(since // bucket) * bucket
    return list(range(first, int(now) + 1, bucket))


def _label(ts: int, bucket: int) -> str:
    return time.strftime("%m-%d" if bucket >= DAY else "%m-%d %H:%M", time.gmtime(ts))


def _charts(rows: list[dict[str, Any]], since: float, now: float, bucket: int) -> list[str]:
    by_bucket = {int(r["bucket"]): r for r in rows}
    stamps = _stamps(since, now, bucket)
    if not any(by_bucket.get(s, {}).get("calls") for s in stamps):
        return []
    labels = [_label(s, bucket) for s in stamps]
    got = [by_bucket.get(s, {}) for s in stamps]

    def series(title: str, values: list[float], fmt: str | Callable[[float], str], fill: str = "#1a73e8") -> str:
        shown = [fmt(v) if callable(fmt) else fmt.format(v) for v in values]
        return charts.columns(list(zip(labels, values, strict=True)), title=title, shown=shown, fill=fill)

    calls = [float(g.get("calls") or 0) for g in got]
    errors = [(g.get("errors") or 0) / c if c else 0.0 for g, c in zip(got, calls, strict=True)]
    p95 = [float(g.get("p95_ms") or 0) for g in got]
    ttft = [float(g.get("ttft_p50_ms") or 0) for g in got]
    tokens = [float((g.get("input_tokens") or 0) + (g.get("output_tokens") or 0)) for g in got]
    cost = [float(g.get("cost_usd") or 0) for g in got]
    return [
        series("Requests", calls, "{:,.0f}"),
        series("Error rate", errors, "{:.1%}", "#b3261e"),
        series("Latency p95 (ms)", p95, "{:,.0f} ms", "#8250df"),
        series("Time to first token p50 (ms)", ttft, "{:,.0f} ms", "#8a6100"),
        series("Tokens", tokens, "{:,.0f}", "#1f883d"),
        series("Cost (USD)", cost, usd, "#cf222e"),
    ]


def _split(
    ui: UI, rows: list[dict[str, Any]], trend: list[dict[str, Any]], by: str, since: float, now: float, bucket: int
) -> list[dict[str, Any]]:
    stamps = _stamps(since, now, bucket) if bucket else []
    per: dict[Any, dict[int, int]] = {}
    for t in trend:
        per.setdefault(t["value"], {})[int(t["bucket"])] = int(t["calls"] or 0)
    out = []
    for r in rows:
        runs, cost = int(r["runs"] or 0), float(r["cost_usd"] or 0.0)
        values = [float(per.get(r["value"], {}).get(s, 0)) for s in stamps]
        out.append(
            {
                **r,
                "name": r["value"] or ("(raw calls)" if by == "feature" else "(none)"),
                "error_rate": int(r["errors"] or 0) / int(r["calls"]) if r["calls"] else 0.0,
                "per_run": cost / runs if runs else None,
                "target": _target(ui, r["value"]) if by == "feature" else None,
                "spark": charts.sparkline(values, label=f"requests of {r['value'] or 'none'} over time")
                if len(values) > 1
                else "",
            }
        )
    return out


def _busiest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: -int(r["calls"] or 0) - int(r["runs"] or 0))[:SHOWN]


def _target(ui: UI, feature: str | None) -> float | None:
    """A feature's cost target: its spec's ``budget.per_call_usd`` (None without one)."""
    root = ui.settings.project_root
    if feature is None or root is None:
        return None
    try:
        spec = load_feature(root, feature)
    except KeelError:
        return None  # a feature that no longer exists, or does not parse: its row still shows
    return spec.budget.per_call_usd if spec.budget is not None else None
