"""Failed pipelines: failed calls and runs grouped by error type, operation, feature and deployment,
with counts, a daily sparkline, first and last seen, and an example trace. Breaker openings
(``CircuitOpen``), budget refusals (``BudgetExceeded``), timeouts and ingest errors are among them,
each under its own type."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keel import charts
from keel.server.ui import nav

if TYPE_CHECKING:
    from keel.server.ui import UI

nav(30, "/ui/failures", "Failures")
WINDOWS = {"24h": 1, "7d": 7, "30d": 30}


def routes(ui: UI) -> list[BaseRoute]:
    async def failures(request: Request) -> Response:
        window = ui.window(request, WINDOWS, "7d")
        days = WINDOWS[window]
        tenant = ui.tenant_for(request)
        since = time.time() - days * 86_400
        groups = await ui.store.db.call(lambda: ui.store.traces.failures(tenant=tenant, since=since))
        calendar = [
            (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=d)).isoformat() for d in range(max(days, 2) - 1, -1, -1)
        ]
        rows: list[dict[str, Any]] = []
        for g in groups:
            trend = [float(g["days"].get(day, 0)) for day in calendar]
            rows.append({**g, "spark": charts.sparkline(trend, label=f"{g['error_type']} per day")})
        return ui.render(request, "failures.html", rows=rows, window=window, windows=list(WINDOWS))

    return [Route("/ui/failures", ui.page(failures), methods=["GET"])]
