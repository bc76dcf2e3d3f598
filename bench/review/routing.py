"""Human review on the demo project: the 33-case golden set routed with ``mode: hold``, a scripted
reviewer, and what the queue machinery costs without the human.

    python bench/review/routing.py                     # the local model; ~4 min on 2 cores
    python bench/review/routing.py --postgres          # the machinery timings on Postgres too

Every answer of ``support_answer`` (the shipped feature, given ``guards: {output: [grounded,
citations]}`` and ``review: {sample: 1, mode: hold}``) is held for review. The reviewer approves an
answer that passes its case's checks (the suite's own, as ``keel eval`` scores it) and edits the
rest. Reported:

- items queued, held jobs ended by the decisions, and the jobs' answers (approved = the model's,
  edited = the reviewer's);
- for several thresholds ``t``, the review load ``confidence < t`` would send, and the share of the
  wrong answers it would catch (recall), with the AUC of confidence against the verdicts;
- the time the queue adds without a person: routing (item + held job, one transaction), claim, and
  decision (item, job and feedback, one transaction) — medians and p95 of every item, on SQLite and
  (``--postgres``) on a real Postgres, replayed from the same 33 results. Target: ≤ 20 ms p50.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from keel.config import settings_from_yaml
from keel.config.settings import KeelSettings
from keel.config.yamlfile import parse_yaml
from keel.evals.results import CaseResult
from keel.evals.runner import check_result
from keel.evals.suite import load_suite
from keel.features.conditions import parse_condition
from keel.features.pipeline import FeatureResult, open_pipeline
from keel.features.reviewing import run_values
from keel.features.spec import load_feature
from keel.rag import ingest
from keel.rag.backends import Collections
from keel.review import ReviewQueue
from keel.review.stats import agreement
from keel.store import Store
from keel.store.engines import open_postgres

console = Console(width=130)
DEMO = Path(__file__).resolve().parents[2] / "src" / "keel" / "demo_project"
EXTRA = "guards: {output: [grounded, citations]}\nreview: {sample: 1, mode: hold, queue: support, sla_minutes: 60}\n"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
RULES = (
    "says_dont_know",
    "guards.grounded < 0.5",
    "guards.citations < 0.6",
    "confidence < 0.5 or says_dont_know",
    "guards.grounded < 0.6 or says_dont_know",
)


def project(tmp: Path) -> Path:
    root = tmp / "project"
    shutil.copytree(DEMO, root)
    feature = root / "features" / "support_answer.yaml"
    feature.write_text(feature.read_text() + EXTRA)
    return root


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def machinery(
    store: Store, settings: KeelSettings, root: Path, results: list[FeatureResult], rounds: int
) -> dict[str, list[float]]:
    """Route, claim and decide every result ``rounds`` times (fresh trace ids), timing each step."""
    queue = ReviewQueue(store, settings, root)
    spec = load_feature(root, "support_answer")
    out: dict[str, list[float]] = {"route": [], "claim": [], "decide": [], "total": []}
    for _ in range(rounds):
        for result in results:
            again = dataclasses.replace(result, trace_id=uuid.uuid4().hex)
            t0 = time.perf_counter()
            item = queue.route(spec, again, {"question": "q"}, tenant="bench", payload={})
            t1 = time.perf_counter()
            assert item is not None
            queue.claim(item.id, tenant="bench", who="r")
            t2 = time.perf_counter()
            queue.decide(item.id, {"action": "approve"}, tenant="bench", who="r")
            t3 = time.perf_counter()
            for name, ms in (("route", t1 - t0), ("claim", t2 - t1), ("decide", t3 - t2), ("total", t3 - t0)):
                out[name].append(ms * 1000)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", action="store_true", help="time the machinery on a real Postgres too")
    parser.add_argument("--rounds", type=int, default=10, help="replays of the 33 results per engine")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="keel-review-bench-"))
    root, home = project(tmp), tmp / "home"
    settings = settings_from_yaml(parse_yaml(f"project_root: '{root}'\n", "bench"))  # the embedded default
    with closing(Collections(settings, home)) as collections:
        ingest(collections.get("handbook", create=True), [root / "handbook"])
    suite = load_suite(root / "evals" / "support_answer.yaml")
    results: list[FeatureResult] = []
    verdicts: list[dict[str, Any]] = []
    served: dict[str, int] = {"approved": 0, "edited": 0, "held": 0}
    async with open_pipeline(settings, home, root) as pipe:
        queue = ReviewQueue(pipe.store, settings, root)
        spec = load_feature(root, "support_answer")
        with Progress(console=console) as bar:
            task = bar.add_task("golden set, held for review", total=len(suite.spec.cases))
            for case in suite.spec.cases:
                inputs = {**suite.spec.defaults, **case.inputs}
                result = await pipe.run("support_answer", inputs, user="bench")
                results.append(result)
                item = queue.route(spec, result, inputs, tenant="default", payload={"inputs": inputs})
                assert item is not None and item.job_id is not None
                job = pipe.store.jobs.get(item.job_id, tenant="default")
                served["held"] += job is not None and job.status == "awaiting_review"
                scored = await check_result(pipe, suite, case, result, CaseResult(case.id))
                right = scored.passed and scored.error is None
                queue.claim(item.id, tenant="default", who="scripted")
                body: dict[str, Any] = {"action": "approve"}
                if not right:
                    body = {"action": "edit", "output": case.expected or f"(the right answer to {case.id})"}
                queue.decide(item.id, body, tenant="default", who="scripted")
                job = pipe.store.jobs.get(item.job_id, tenant="default")
                assert job is not None and job.status == "succeeded"
                if right:
                    served["approved"] += job.result["answer"] == result.answer
                else:
                    served["edited"] += job.result["answer"] == body["output"]
                verdicts.append({"confidence": result.confidence, "action": body["action"], "sampled": True,
                                 "values": run_values(result)})  # fmt: skip
                bar.advance(task)
    wrong = sum(v["action"] != "approve" for v in verdicts)
    console.print(
        f"[bold]{len(verdicts)} items queued[/bold], {served['held']} jobs held awaiting review; "
        f"{len(verdicts) - wrong} approved (served as the model said: {served['approved']}), "
        f"{wrong} edited (served as edited: {served['edited']})"
    )
    a = agreement(verdicts, THRESHOLDS)
    title = f"confidence vs the scripted reviewer: {wrong}/{len(verdicts)} wrong, AUC {a['auc']}"
    table = Table("confidence <", "review load", "wrong answers caught (recall)", "precision", title=title)
    for row in a["thresholds"]:
        load = f"{row['load']:.0%}" if row["load"] is not None else "—"
        recall = f"{row['recall']:.0%}" if row["recall"] is not None else "—"
        precision = f"{row['precision']:.0%}" if row["precision"] is not None else "—"
        table.add_row(f"{row['threshold']:.1f}", load, recall, precision)
    console.print(table)
    rules = Table("review.when", "review load", "wrong answers caught (recall)", "precision",
                  title="other rules on the same verdicts (conditions the spec can hold)")  # fmt: skip
    for rule in RULES:
        condition = parse_condition(rule)
        sent = [v for v in verdicts if condition(v["values"])]
        caught = sum(v["action"] != "approve" for v in sent)
        rules.add_row(rule, f"{len(sent) / len(verdicts):.0%}", f"{caught / wrong:.0%}" if wrong else "—",
                      f"{caught / len(sent):.0%}" if sent else "—")  # fmt: skip
    console.print(rules)

    timing = Table("engine", "step", "n", "p50 ms", "p95 ms", "max ms", title="the queue without the human")
    with ExitStack() as stack:
        engines: list[tuple[str, Any]] = [("sqlite", lambda: Store.at(tmp / "machinery.db"))]
        if args.postgres:
            from keel.testing.postgres_server import PostgresServer

            pg = stack.enter_context(PostgresServer(tmp / "pg"))
            engines.append(("postgres", lambda: Store(open_postgres(pg.database()))))
        for name, opener in engines:
            with opener() as store:
                times = machinery(store, settings, root, results, args.rounds)
            for step, values in times.items():
                timing.add_row(name, step, str(len(values)), f"{statistics.median(values):.2f}",
                               f"{pct(values, 0.95):.2f}", f"{max(values):.2f}")  # fmt: skip
    console.print(timing)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
