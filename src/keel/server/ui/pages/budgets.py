"""Budgets and limits: each budget bucket of the current windows with its usage bar, what is held by
calls in flight, when it resets and which alert shares it has passed; the rate limits configured."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keel.server.ui import nav, spend

if TYPE_CHECKING:
    from keel.server.ui import UI

nav(60, "/ui/budgets", "Budgets")


def routes(ui: UI) -> list[BaseRoute]:
    async def budgets(request: Request) -> Response:
        tenant = ui.tenant_for(request)
        rows, left_out = await spend.buckets(ui.settings.budgets, ui.ledger, tenant)
        limits = ui.settings.limits
        return ui.render(
            request,
            "budgets.html",
            rows=rows,
            left_out=left_out,
            configured=ui.settings.budgets,
            limits=limits,
            ledger=ui.settings.ledger.backend,
        )

    return [Route("/ui/budgets", ui.page(budgets), methods=["GET"])]
