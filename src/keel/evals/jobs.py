"""An eval run as a durable job (``keel eval SUITE --async``): the worker runs the suite from the
project's ``evals/`` folder, reports cases done over total, saves the run like ``keel eval`` does,
and keeps the summary and the gate's verdict as the job's result."""

from __future__ import annotations

from typing import Any

from keel.evals.gate import apply_gate
from keel.evals.results import ResultCache, baseline_run, save_run
from keel.evals.runner import require_feature, run_suite
from keel.evals.suite import find_suite, load_suite
from keel.features.pipeline import FeaturePipeline
from keel.progress import report
from keel.store.jobs import Job

KIND = "eval"


def eval_payload(suite: str, *, label: str | None, baseline: str | None, cache: bool) -> dict[str, Any]:
    return {"suite": suite, "label": label, "baseline": baseline, "cache": cache}


def eval_work(pipeline: FeaturePipeline) -> Any:
    async def run(job: Job) -> tuple[Any, float | None]:
        body, tenant = job.payload, job.tenant
        suite = load_suite(find_suite(pipeline.root, str(body["suite"])))
        require_feature(pipeline, suite, tenant)
        evals = pipeline.store.evals
        before = baseline_run(evals, suite.name, body.get("baseline"), tenant)
        total, done = len(suite.spec.cases), 0

        def one(_: Any) -> None:
            nonlocal done
            done += 1
            report(done, total, "cases")

        report(0, total, "cases")
        cache = ResultCache(evals, tenant) if body.get("cache", True) else None
        ran = await run_suite(pipeline, suite, progress=one, cache=cache, tenant=tenant)
        ran.label = body.get("label") if not ran.summary.partial else None
        save_run(evals, ran, tenant)
        rules = apply_gate(suite, ran, before)
        s = ran.summary
        result = {
            "run_id": ran.id,
            "suite": suite.name,
            "feature": ran.feature,
            "cases": s.cases,
            "passed": s.passed,
            "pass_rate": s.pass_rate,
            "mean_score": s.mean_score,
            "errors": s.errors,
            "gate_passed": all(r.passed for r in rules),
            "gate": [{"rule": r.name, "passed": r.passed, "detail": r.detail} for r in rules],
        }
        return result, s.cost_usd

    return run
