"""Review: the queues (backlog, oldest, SLA breaches, decisions, how confidence agrees with the
reviewers) and their items, oldest first; one item with everything a reviewer needs — the
question, the answer, each source with the answer's sentences that cite it, the guard scores with
their reasons, prompt version, model and cost — and the forms that claim, approve, edit or reject
it. Reviewer keys see this page and nothing else of the dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from keel.errors import ReviewItemNotFound, UserError
from keel.review import ReviewQueue, item_json
from keel.review.stats import queue_stats
from keel.server.ui import nav
from keel.store.keys import Caller
from keel.store.reviews import STATES

if TYPE_CHECKING:
    from keel.server.ui import UI

REVIEWERS = ("member", "reviewer")
nav(80, "/ui/review", "Review", REVIEWERS)
ACTIONS = ("claim", "release", "approve", "edit", "reject")


def _who(caller: Caller) -> str:
    return caller.key or "local"


def routes(ui: UI) -> list[BaseRoute]:
    def queue() -> ReviewQueue:
        return ReviewQueue(ui.store, ui.settings, ui.settings.project_root)

    async def listing(request: Request) -> Response:
        tenant = ui.own_tenant(request)
        status = ui.choice(request, "status", [*STATES, "all"], "pending")
        name = request.query_params.get("queue") or None

        def load() -> dict[str, Any]:
            if name is not None:
                queue().check_queue(name)
            rows = ui.store.reviews.find(tenant=tenant, queue=name, status=None if status == "all" else status)
            stats = queue_stats(ui.store.reviews.queues(tenant=tenant), ui.store.reviews.decisions(tenant=tenant))
            return {"rows": rows, "stats": stats}

        loaded = await ui.store.db.call(load)
        return ui.render(request, "review.html", chosen=status, queue=name, statuses=[*STATES, "all"], **loaded)

    async def detail(request: Request) -> Response:
        tenant, item_id, caller = ui.own_tenant(request), request.path_params["item_id"], request.state.caller
        item = await ui.store.db.call(lambda: ui.store.reviews.get(item_id, tenant=tenant))
        if item is None:
            raise ReviewItemNotFound(f"no review item '{item_id[:80]}'")
        shown = item_json(item, raw=caller.role in ui.settings.review.raw_roles)
        answer = shown["item"].get("answer")
        return ui.render(
            request, "review_item.html", item=shown, mine=item.claimed_by == _who(caller), draft=answer or "",
            saved=request.query_params.get("saved"),
        )  # fmt: skip

    async def act(request: Request) -> Response:
        form = await ui.form(request)
        tenant, item_id, caller = ui.own_tenant(request), request.path_params["item_id"], request.state.caller
        action = str(form.get("action") or "")
        if action not in ACTIONS:
            raise UserError(f"action must be one of {', '.join(ACTIONS)}")
        who, q = _who(caller), queue()

        def run() -> str:
            if action == "claim":
                q.claim(item_id, tenant=tenant, who=who)
                return "Claimed: it is yours until the claim runs out."
            if action == "release":
                ui.store.reviews.release(item_id, tenant=tenant, who=who)
                return "Released."
            body: dict[str, Any] = {"action": action, "reason": str(form.get("reason") or "").strip()[:4000] or None}
            if action == "edit":
                body["output"] = str(form.get("output") or "")
            q.decide(item_id, body, tenant=tenant, who=who)
            return {"approve": "Approved.", "edit": "Edited.", "reject": "Rejected."}[action]

        saved = await ui.store.db.call(run)
        back = {"saved": saved, **({"tenant": t} if (t := request.query_params.get("tenant")) else {})}
        return RedirectResponse(f"/ui/review/{item_id}?{urlencode(back)}", status_code=303)

    return [
        Route("/ui/review", ui.page(listing, REVIEWERS), methods=["GET"]),
        Route("/ui/review/{item_id}", ui.page(detail, REVIEWERS), methods=["GET"]),
        Route("/ui/review/{item_id}", ui.page(act, REVIEWERS), methods=["POST"]),
    ]
