"""Overview: requests, errors, latency, tokens and cost over time, by feature, from the hourly
rollups the trace writer keeps (a month of traffic is a few thousand rows, whatever the volume)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keel import charts
from keel.server.ui import nav

if TYPE_CHECKING:
    from keel.server.ui import UI

nav(10, "/ui/overview", "Overview")
WINDOWS = {"24h": (86_400, 3600), "7d": (7 * 86_400, 6 * 3600), "30d": (30 * 86_400, 24 * 3600)}


def routes(ui: UI) -> list[BaseRoute]:
    async def overview(request: Request) -> Response:
        window = ui.window(request, WINDOWS, "24h")
        span, bucket = WINDOWS[window]
        tenant = ui.tenant_for(request)
        rows = await ui.store.db.call(
            lambda: ui.store.traces.dashboard(tenant=tenant, since=time.time() - span, bucket_s=bucket)
        )
        return ui.render(request, "overview.html", window=window, windows=list(WINDOWS), **summarise(rows))

    return [Route("/ui/overview", ui.page(overview), methods=["GET"])]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    features: dict[str, dict[str, Any]] = defaultdict(lambda: {"calls": 0, "errors": 0, "cost": 0.0, "tokens": 0})
    per_bucket: dict[int, int] = defaultdict(int)
    for row in rows:
        f = features[row["feature"] or "(raw calls)"]
        f["calls"] += int(row["calls"] or 0)
        f["errors"] += int(row["errors"] or 0)
        f["cost"] += float(row["cost_usd"] or 0.0)
        f["tokens"] += int(row["input_tokens"] or 0) + int(row["output_tokens"] or 0)
        f["p50"], f["p95"] = row["p50_ms"], row["p95_ms"]  # the latest bucket's
        per_bucket[int(row["bucket"])] += int(row["calls"] or 0)
    calls = sum(f["calls"] for f in features.values())
    errors = sum(f["errors"] for f in features.values())
    peak = max(per_bucket.values(), default=0) or 1
    chart = charts.bars(
        [(time.strftime("%m-%d %H:%M", time.gmtime(b)), n / peak) for b, n in sorted(per_bucket.items())][-24:],
        labels=[str(n) for _, n in sorted(per_bucket.items())][-24:],
        fill="#1a73e8",
    )
    return {
        "calls": calls,
        "error_rate": errors / calls if calls else 0.0,
        "cost": sum(f["cost"] for f in features.values()),
        "features": sorted(features.items(), key=lambda kv: -kv[1]["calls"]),
        "chart": chart if per_bucket else "",
    }
