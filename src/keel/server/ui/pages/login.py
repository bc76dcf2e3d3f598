"""Sign in with an API key (the key is checked once and never stored in the cookie), sign out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from keel.server.ui.session import COOKIE

if TYPE_CHECKING:
    from keel.server.ui import UI


def routes(ui: UI) -> list[BaseRoute]:
    async def show(request: Request) -> Response:
        return ui.render(request, "login.html", next=_safe(request.query_params.get("next")), error=None)

    async def sign_in(request: Request) -> Response:
        form = await ui.fields(request)
        key, target = str(form.get("key") or "").strip(), _safe(str(form.get("next") or ""))
        caller = await ui.store.db.call(lambda: ui.store.keys.caller(key)) if key else None
        if caller is None:
            error = "That key is not valid (or it was revoked). Create one with `keel keys create`."
            return ui.render(request, "login.html", status=401, next=target, error=error)
        return ui.sign_in(RedirectResponse(target, status_code=303), caller)

    async def sign_out(request: Request) -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    return [
        Route("/ui/login", show, methods=["GET"]),
        Route("/ui/login", sign_in, methods=["POST"]),
        Route("/ui/logout", sign_out, methods=["POST"]),
    ]


def _safe(target: str | None) -> str:
    """Only a path inside the dashboard: never an open redirect."""
    return target if target and target.startswith("/ui/") and not target.startswith("/ui//") else "/ui"
