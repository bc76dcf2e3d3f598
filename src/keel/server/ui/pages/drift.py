"""Drift: each monitored feature's signals now against their reference, its open alerts and
failing evaluators; one feature with every signal's series — the reference's band shaded, the
window tinted, and the change points (what began serving, label moves) marked where they fall."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keel import charts
from keel.errors import FeatureNotFound
from keel.monitor.compare import ranked, short_p
from keel.monitor.series import marks, signal_series
from keel.monitor.sweeper import FIRST_LOOK_S, Monitors
from keel.monitor.watch import Status, feature_status
from keel.server.ui import nav

if TYPE_CHECKING:
    from keel.server.ui import UI

nav(90, "/ui/drift", "Drift")


def _when(ts: float) -> str:
    return time.strftime("%m-%d %H:%M", time.gmtime(ts))


def _fmt(kind: str) -> str:
    return "{:.1%}" if kind == "rate" else "{:.3g}"


def _charts(ui: UI, tenant: str, status: Status) -> list[dict[str, Any]]:
    """A chart per signal that has data, the alarming ones first (the verdicts are sorted so)."""
    out = []
    for s in signal_series(ui.store, tenant, status):
        labels = (f"{_when(s.edges[0])} (reference)", f"window from {_when(s.edges[s.reference_buckets])} UTC")
        svg = charts.band_series(
            s.values, title=s.signal.label, band=s.band, split=s.reference_buckets, marks=marks(s, status.changes),
            labels=labels, fmt=_fmt(s.signal.kind),
        )  # fmt: skip
        if svg:
            out.append({"name": s.signal.name, "svg": svg})
    return out


def routes(ui: UI) -> list[BaseRoute]:
    root = ui.settings.project_root

    def statuses(tenant: str, feature: str | None) -> list[Status]:
        now = time.time()
        Monitors(ui.store, ui.settings, root).read_traces(now)
        names = [feature] if feature else ui.store.monitors.features(tenant, now - FIRST_LOOK_S)
        found: list[Status] = []
        for name in names:
            try:
                found.extend(feature_status(ui.store, root, tenant, name, now, ui.settings))
            except FeatureNotFound:
                if feature is not None:
                    raise
        for s in found:
            s.verdicts = ranked(s.verdicts)
        return found

    async def listing(request: Request) -> Response:
        tenant = ui.own_tenant(request)
        found = await ui.store.db.call(lambda: statuses(tenant, None))
        alerts = await ui.store.db.call(lambda: ui.store.monitors.open_alerts(tenant))
        return ui.render(request, "drift.html", statuses=found, alerts=alerts, fmt=_fmt, short_p=short_p)

    async def detail(request: Request) -> Response:
        tenant, feature = ui.own_tenant(request), request.path_params["feature"]

        def load() -> dict[str, Any]:
            found = statuses(tenant, feature)
            return {
                "statuses": [(s, _charts(ui, tenant, s)) for s in found],
                "alerts": ui.store.monitors.open_alerts(tenant, feature),
            }

        loaded = await ui.store.db.call(load)
        return ui.render(request, "drift_feature.html", feature=feature, fmt=_fmt, **loaded)

    return [
        Route("/ui/drift", ui.page(listing), methods=["GET"]),
        Route("/ui/drift/{feature}", ui.page(detail), methods=["GET"]),
    ]
