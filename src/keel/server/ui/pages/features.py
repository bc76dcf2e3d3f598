"""Features and prompts: each feature's spec, its prompt's versions with a diff between any two, the
label history, and its experiments with their report (95% intervals). Moving a label from the page
takes an admin key; every move is recorded with who made it and why."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from keel.errors import FeatureNotFound, Forbidden, InvalidRequest, KeelError
from keel.features.experiments import Experiments, report
from keel.features.prompts import Actor, PromptRegistry
from keel.features.spec import load_feature
from keel.server.ui import nav
from keel.store.keys import Caller

if TYPE_CHECKING:
    from keel.server.ui import UI

nav(40, "/ui/features", "Features")


def routes(ui: UI) -> list[BaseRoute]:
    root = ui.settings.project_root

    def registry() -> PromptRegistry:
        return PromptRegistry(ui.store.prompts, root / "prompts")

    async def listing(request: Request) -> Response:
        tenant = ui.own_tenant(request)

        def load() -> list[dict[str, Any]]:
            out = []
            running = {e.feature: e.name for e in Experiments(ui.store, tenant).list() if e.status == "running"}
            for path in sorted((root / "features").glob("*.yaml")):
                row: dict[str, Any] = {"name": path.stem, "experiment": running.get(path.stem)}
                try:
                    spec = load_feature(root, path.stem)
                    row.update(prompt=spec.prompt, model=spec.model, error=None)
                    row["versions"] = ui.store.prompts.versions(spec.prompt)
                except KeelError as exc:
                    row.update(prompt=None, model=None, error=exc.message, versions=[])
                out.append(row)
            return out

        return ui.render(request, "features.html", features=await ui.store.db.call(load), root=str(root))

    async def detail(request: Request) -> Response:
        name, tenant, query = request.path_params["name"], ui.own_tenant(request), request.query_params

        def load() -> dict[str, Any]:
            spec = load_feature(root, name)
            path = root / "features" / f"{name}.yaml"
            versions = ui.store.prompts.versions(spec.prompt)
            numbers = [int(v["version"]) for v in versions]
            a, b = _pair(query.get("a"), query.get("b"), numbers)
            diff = _diff(ui, spec.prompt, a, b) if a is not None and b is not None else []
            experiments = [e for e in Experiments(ui.store, tenant).list() if e.feature == name]
            asked = query.get("experiment")
            shown = next((e for e in experiments if e.name == asked), None) if asked else None
            shown = shown or next((e for e in experiments if e.status == "running"), None)
            return {
                "name": name,
                "spec_text": _read(path),
                "prompt": spec.prompt,
                "versions": versions,
                "numbers": numbers,
                "a": a,
                "b": b,
                "diff": diff,
                "history": registry().history(spec.prompt),
                "experiments": experiments,
                "report": report(ui.store, shown) if shown is not None else None,
            }

        data = await ui.store.db.call(load)
        return ui.render(request, "feature.html", **data, moved=query.get("moved"))

    async def move_label(request: Request) -> Response:
        form = await ui.form(request)
        caller: Caller = request.state.caller
        if not caller.admin:
            raise Forbidden("moving a label takes an admin key")
        name = request.path_params["name"]
        label, reason = str(form.get("label") or "").strip(), str(form.get("reason") or "").strip()
        try:
            version = int(str(form.get("version") or ""))
        except ValueError:
            raise InvalidRequest("pick the version the label should point at") from None
        if not reason:
            raise InvalidRequest("say why the label moves (it is kept in the label history)")

        def move() -> None:
            spec = load_feature(root, name)
            actor = Actor(caller.tenant, f"key:{caller.key}" if caller.key else "dashboard")
            registry().set_label(spec.prompt, label, version, reason[:500], actor)

        await ui.store.db.call(move)
        target = f"/ui/features/{name}?{urlencode({'moved': f'{label} → v{version}'})}"
        return RedirectResponse(target, status_code=303)

    return [
        Route("/ui/features", ui.page(listing), methods=["GET"]),
        Route("/ui/features/{name}", ui.page(detail), methods=["GET"]),
        Route("/ui/features/{name}/label", ui.page(move_label), methods=["POST"]),
    ]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FeatureNotFound(f"cannot read {path.name}: {exc.strerror}") from None


def _pair(a: str | None, b: str | None, numbers: list[int]) -> tuple[int | None, int | None]:
    """The two versions to diff: those asked for, else the newest two."""
    if a is None and b is None:
        return (numbers[-2], numbers[-1]) if len(numbers) >= 2 else (None, None)
    try:
        pair = int(a or ""), int(b or "")
    except ValueError:
        raise InvalidRequest("versions to compare are numbers, e.g. ?a=1&b=2") from None
    missing = [v for v in pair if v not in numbers]
    if missing:
        raise InvalidRequest(f"the prompt has no version {missing[0]} (versions: {', '.join(map(str, numbers))})")
    return pair


def _diff(ui: UI, prompt: str, a: int, b: int) -> list[tuple[str, str]]:
    """(kind, line) of a unified diff between two versions: kind is add, del, hunk or same."""
    old, new = ui.store.prompts.source(prompt, a) or "", ui.store.prompts.source(prompt, b) or ""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), f"v{a}", f"v{b}", lineterm="", n=3)
    out = []
    for line in lines:
        if line.startswith(("+++", "---")):
            continue
        kind = "hunk" if line.startswith("@@") else "add" if line[:1] == "+" else "del" if line[:1] == "-" else "same"
        out.append((kind, line))
    return out
