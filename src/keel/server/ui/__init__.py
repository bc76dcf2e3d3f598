"""The dashboard at ``/ui``: server-rendered pages (Jinja2, htmx for partial updates, inline SVG
charts) over the store, behind the session of an API key.

One template folder (``templates/``, shared components in ``_components.html``), one route module
per page (``pages/``). A page module adds itself to ``PAGES`` and the navigation follows, so the
jobs, review and drift pages can join without touching the others.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from keel.config.settings import KeelSettings
from keel.cost.ledger import Ledger
from keel.errors import CsrfFailed, InvalidRequest, KeelError, NotFound, StoreUnavailable, UserError
from keel.server.ui.session import COOKIE, LIFETIME_S, Session, Sessions
from keel.server.ui.spend import usd
from keel.store import Store
from keel.store.keys import Caller

HERE = Path(__file__).parent
PageHandler = Callable[[Request], Awaitable[Response]]

#: (place, path, label, roles) of every page in the navigation; a page module adds itself with ``nav``
PAGES: list[tuple[int, str, str, tuple[str, ...]]] = []
MEMBERS = ("member",)  # who may open a page unless it says otherwise (admins always may)


def nav(place: int, path: str, label: str, roles: tuple[str, ...] = MEMBERS) -> None:
    """Put a page in the navigation at ``place`` (10 overview, 20 traces, 30 failures, 40 features,
    50 evals, 60 budgets; the jobs, review and drift pages take 70, 80 and 90), shown to ``roles``."""
    if not any(p == path for _, p, _, _ in PAGES):
        PAGES.append((place, path, label, roles))
        PAGES.sort()


def allowed(caller: Caller, roles: tuple[str, ...]) -> bool:
    return caller.admin or caller.role in roles


class UI:
    def __init__(
        self,
        store: Store,
        sessions: Sessions,
        *,
        settings: KeelSettings | None = None,
        ledger: Ledger | None = None,
        secure: bool = False,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.settings = settings or KeelSettings()
        self.ledger = ledger
        self.secure = secure
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["timestamp"] = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
        self.env.filters["usd"] = usd
        self.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)  # then escaped
        self.assets = json.loads((HERE / "static" / "assets.json").read_text())

    def routes(self) -> list[BaseRoute]:
        from keel.server.ui.pages import budgets, drift, evals, failures, features, login, overview, review, traces

        return [
            Route("/ui", self._home, methods=["GET"]),
            Mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static"),
            *login.routes(self),
            *overview.routes(self),
            *traces.routes(self),
            *failures.routes(self),
            *features.routes(self),
            *evals.routes(self),
            *budgets.routes(self),
            *review.routes(self),
            *drift.routes(self),
        ]

    async def _home(self, request: Request) -> Response:
        """The first page the caller's role may open (a reviewer's is the review queue)."""
        session = self.sessions.read(request.cookies.get(COOKIE))
        role = session.role if session is not None else "member"
        first = next((p for _, p, _, roles in PAGES if role == "admin" or role in roles), "/ui/overview")
        return RedirectResponse(first, status_code=303)

    # -- the session, on every page ----------------------------------------------------------------
    def page(self, handler: PageHandler, roles: tuple[str, ...] = MEMBERS) -> PageHandler:
        """A page behind a session: signed in, the key still live, else to the sign-in page; a role
        the page is not for gets a 403 page (a reviewer sees the review queue, not traces). Errors
        become a page with their message (400s), never a traceback."""

        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            session = self.sessions.read(request.cookies.get(COOKIE))
            caller = None
            if session is not None:
                caller = await self.store.db.call(lambda: self.store.keys.live(session.key))
            if session is None or caller is None:
                target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                return RedirectResponse(f"/ui/login?next={target}", status_code=303)
            request.state.session, request.state.caller = session, caller
            if not allowed(caller, roles):
                message = f"A '{caller.role}' key may not open this page."
                return self.render(request, "message.html", status=403, title="Not for this key", message=message)
            try:
                return await handler(request)
            except NotFound as exc:
                return self.render(request, "message.html", status=404, title="Not found", message=exc.message)
            except StoreUnavailable as exc:
                return self.render(request, "message.html", status=503, title="The store is away", message=exc.message)
            except KeelError as exc:
                status = exc.status if 400 <= exc.status < 500 else 500
                return self.render(request, "message.html", status=status, title="Not possible", message=exc.message)

        return guarded

    async def fields(self, request: Request) -> dict[str, str]:
        """A POSTed urlencoded form (the dashboard's forms are small: no multipart, no dependency)."""
        body = await request.body()
        if len(body) > 64 * 1024:
            raise UserError("the form is too large")
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    async def form(self, request: Request) -> dict[str, Any]:
        """A POSTed form, its CSRF token checked (403 without the right one)."""
        data: dict[str, Any] = await self.fields(request)
        session: Session = request.state.session
        if not self.sessions.csrf_ok(session, str(data.get("csrf") or request.headers.get("x-csrf-token") or "")):
            raise CsrfFailed("the form's CSRF token is missing or wrong: reload the page and try again")
        return data

    def choice(self, request: Request, name: str, allowed: Sequence[str], default: str) -> str:
        """The ``?name=`` a page was asked for, one of ``allowed`` (anything else is a 400 page)."""
        value = request.query_params.get(name, default)
        if value not in allowed:
            raise InvalidRequest(f"{name} must be one of {', '.join(allowed)} (got {value[:80]!r})")
        return value

    def window(self, request: Request, windows: dict[str, Any], default: str) -> str:
        """The ``?window=`` a page was asked for, one of ``windows``."""
        return self.choice(request, "window", list(windows), default)

    def tenant_for(self, request: Request) -> str | None:
        """The tenant a page shows: the caller's; an admin may pick one (``?tenant=``) or all (``*``)."""
        caller: Caller = request.state.caller
        asked = request.query_params.get("tenant")
        if not caller.admin or not asked:
            return caller.tenant
        return None if asked == "*" else asked

    def own_tenant(self, request: Request) -> str:
        """One tenant, for data that is always a tenant's (experiments, eval runs): the one shown, or
        the admin's own when all are."""
        caller: Caller = request.state.caller
        return self.tenant_for(request) or caller.tenant

    def render(self, request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        session: Session | None = getattr(request.state, "session", None)
        caller: Caller | None = getattr(request.state, "caller", None)
        tenants: list[str] = []
        if caller is not None and caller.admin:
            tenants = [str(t["name"]) for t in self.store.keys.tenants()]
        html = self.env.get_template(template).render(
            pages=[(path, label) for _, path, label, roles in PAGES if caller is not None and allowed(caller, roles)],
            path=request.url.path,
            caller=caller,
            tenants=tenants,
            shown_tenant=self.tenant_for(request) if caller is not None else None,
            tenant_param=request.query_params.get("tenant") if caller is not None and caller.admin else None,
            csrf=self.sessions.csrf(session) if session is not None else "",
            htmx=self.assets["htmx.min.js"],
            **context,
        )
        headers = {
            "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
            "x-content-type-options": "nosniff",
            "referrer-policy": "same-origin",
            "cache-control": "no-store",
        }
        return HTMLResponse(html, status_code=status, headers=headers)

    def sign_in(self, response: Response, caller: Caller) -> Response:
        assert caller.key is not None
        response.set_cookie(
            COOKIE,
            self.sessions.issue(caller.key, caller.tenant, caller.role),
            max_age=LIFETIME_S,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )
        return response
