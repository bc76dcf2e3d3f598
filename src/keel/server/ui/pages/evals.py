"""Evals: the runs of each suite with the gate's verdict, pass rate and check scores over time; one
run against its baseline (changes with 95% intervals, the cases that flipped) and its worst cases,
with the HTML report ``keel eval --html`` writes embedded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from keel import charts
from keel.errors import InvalidRequest, KeelError, NotFound
from keel.evals.gate import Outcome, Rule, apply_gate, deltas
from keel.evals.report import render_html
from keel.evals.results import EvalRun, RunSummary, load_run
from keel.evals.suite import Suite, find_suite, load_suite
from keel.server.ui import nav

if TYPE_CHECKING:
    from keel.server.ui import UI

nav(50, "/ui/evals", "Evals")
RUNS = 50  # a suite's newest runs, on its page


def routes(ui: UI) -> list[BaseRoute]:
    root = ui.settings.project_root

    def suite_file(name: str) -> Suite | None:
        """The suite's YAML from the project (its gate), or None when it is gone or does not parse."""
        try:
            return load_suite(find_suite(root, name)) if "/" not in name and not name.startswith(".") else None
        except KeelError:
            return None

    def baseline_of(request: Request) -> str:
        value = request.query_params.get("baseline", "main")
        if not value or len(value) > 128:
            raise InvalidRequest("baseline is a run id or a label, e.g. ?baseline=main")
        return value

    async def listing(request: Request) -> Response:
        tenant = ui.own_tenant(request)
        stored = {r["suite"]: r for r in await ui.store.db.call(lambda: ui.store.evals.suites(tenant))}
        files = sorted(p.stem for p in (root / "evals").glob("*.yaml")) if (root / "evals").is_dir() else []
        suites = [{"suite": n, "runs": 0, "last": None, **stored.get(n, {})} for n in sorted({*files, *stored})]
        return ui.render(request, "evals.html", suites=suites, root=str(root))

    async def suite(request: Request) -> Response:
        name, tenant, baseline = request.path_params["suite"], ui.own_tenant(request), baseline_of(request)

        def load() -> dict[str, Any]:
            rows = ui.store.evals.runs(tenant, name, limit=RUNS)
            if not rows:
                raise NotFound(f"suite '{name}' has no runs yet (run `keel eval {name}`)")
            spec = suite_file(name)
            before = load_run(ui.store.evals, name, baseline, tenant)
            runs = []
            for row in rows:
                summary = RunSummary(**orjson.loads(row["summary"]))
                run = EvalRun(row["id"], name, row["feature"], row["started"], [], summary, row["status"], row["label"])
                rules = apply_gate(spec, run, before if before and before.id != run.id else None) if spec else None
                runs.append({**row, "summary": summary, "verdict": _verdict(rules, summary)})
            return {"runs": runs, "charts": _charts(runs), "gated": spec is not None, "baseline": before}

        return ui.render(request, "eval_suite.html", suite=name, **await ui.store.db.call(load), asked=baseline)

    def outcome(request: Request) -> tuple[Outcome, EvalRun | None, Suite | None]:
        name, run_id, tenant = request.path_params["suite"], request.path_params["run"], ui.own_tenant(request)
        run = load_run(ui.store.evals, name, run_id, tenant)
        if run is None or run.id != run_id:
            raise NotFound(f"suite '{name}' has no run '{run_id}'")
        before = load_run(ui.store.evals, name, baseline_of(request), tenant)
        before = before if before is not None and before.id != run.id else None
        spec = suite_file(name)
        rules = apply_gate(spec, run, before) if spec else []
        return Outcome(run, rules, deltas(run, before) if before else []), before, spec

    async def run_page(request: Request) -> Response:
        done, before, spec = await ui.store.db.call(lambda: outcome(request))
        flips = _flips(done.run, before) if before else {"broke": [], "fixed": []}
        return ui.render(
            request,
            "eval_run.html",
            suite=done.run.suite,
            run=done.run,
            rules=done.rules,
            changes=done.deltas,
            before=before,
            flips=flips,
            verdict=_verdict(done.rules if spec else None, done.run.summary),
            query=request.url.query,
        )

    async def report(request: Request) -> Response:
        done, _, _ = await ui.store.db.call(lambda: outcome(request))
        headers = {
            "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            "frame-ancestors 'self'",
            "x-content-type-options": "nosniff",
            "cache-control": "no-store",
        }
        return HTMLResponse(render_html([done]), headers=headers)

    return [
        Route("/ui/evals", ui.page(listing), methods=["GET"]),
        Route("/ui/evals/{suite}", ui.page(suite), methods=["GET"]),
        Route("/ui/evals/{suite}/{run}", ui.page(run_page), methods=["GET"]),
        Route("/ui/evals/{suite}/{run}/report", ui.page(report), methods=["GET"]),
    ]


def _verdict(rules: list[Rule] | None, summary: RunSummary) -> str:
    """passed | failed | unknown (the suite file is not in the project any more: no gate to apply)."""
    if rules is None:
        return "unknown"
    ok = all(r.passed for r in rules) and not summary.errors and not summary.partial and summary.cases > 0
    return "passed" if ok else "failed"


def _charts(runs: list[dict[str, Any]]) -> list[str]:
    ordered = list(reversed(runs))  # oldest first
    if len(ordered) < 2:
        return []
    labels = [r["id"][:8] for r in ordered]
    out = [
        charts.columns(
            list(zip(labels, [r["summary"].pass_rate for r in ordered], strict=True)),
            title="Pass rate",
            shown=[f"{r['summary'].pass_rate:.1%}" for r in ordered],
            fill="#1f883d",
        )
    ]
    checks = sorted({c for r in ordered for c in r["summary"].check_scores})
    for check in checks[:8]:
        scores = [float(r["summary"].check_scores.get(check, 0.0)) for r in ordered]
        out.append(
            charts.columns(
                list(zip(labels, scores, strict=True)), title=f"{check} score", shown=[f"{s:.2f}" for s in scores]
            )
        )
    return out


def _flips(run: EvalRun, before: EvalRun) -> dict[str, list[str]]:
    """Cases that passed in the baseline and fail now (broke), and the reverse (fixed)."""
    then = {r.case_id: r.passed for r in before.results if r.error is None}
    broke = [r.case_id for r in run.results if then.get(r.case_id) is True and not r.passed]
    fixed = [r.case_id for r in run.results if then.get(r.case_id) is False and r.passed]
    return {"broke": broke, "fixed": fixed}
