"""``keel eval SUITE``: run an eval suite through the feature pipeline and gate on it.

Exit codes CI can trust: **0** the gate passed, **100** the gate failed, **1** the run itself failed
(a case errored, the run was interrupted, the suite or config is broken).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel.cli.common import TENANT, Env, console, fmt_cost, load_env, parse_since
from keel.errors import KeelError, UserError
from keel.evals import promote
from keel.evals.gate import MetricDelta, Outcome, apply_gate, compare, deltas
from keel.evals.report import write_html
from keel.evals.results import ResultCache, baseline_run, save_run
from keel.evals.runner import Variant, require_feature, run_suite
from keel.evals.suite import Suite, find_suite, load_suite
from keel.features.pipeline import open_pipeline

PASSED, GATE_FAILED, ERRORED = 0, 100, 1


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        suite: str = typer.Argument(..., help="a suite: evals/<name>.yaml under --root, or a path"),
        root: Path = typer.Option(Path("."), help="the project folder holding features/, prompts/, evals/"),
        baseline: str | None = typer.Option(None, help="compare with a run id or the newest run labelled so"),
        label: str | None = typer.Option(None, help="label this run (e.g. main) so later runs can compare"),
        concurrency: int | None = typer.Option(None, min=1, max=64, help="cases at a time (default: the suite's)"),
        prompt_versions: str | None = typer.Option(None, help="matrix: prompt versions to compare, e.g. 6,7"),
        models: str | None = typer.Option(None, help="matrix: models or tiers to compare, e.g. fast,accurate"),
        cache: bool = typer.Option(True, help="replay results whose case, prompt, model and index are unchanged"),
        json: bool = typer.Option(False, "--json", help="print the run as JSON"),
        junit: Path | None = typer.Option(None, help="write JUnit XML here"),
        html: Path | None = typer.Option(None, help="write a self-contained HTML report here"),
        queue: bool = typer.Option(
            False, "--async", help="queue the run as a durable job (keel serve or keel worker runs it, reporting cases)"
        ),
        tenant: str = TENANT,
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
    ) -> None:
        """Run a suite; exit 0 when the gate passes, 100 when it fails, 1 on errors."""
        try:
            env = load_env(config)
            loaded = load_suite(find_suite(root, suite))
            if queue:
                if prompt_versions or models or junit or html or json:
                    raise UserError("--async runs one suite as it stands; matrices and reports need a run here")
                from keel.cli.jobs import submit
                from keel.evals.jobs import KIND, eval_payload

                with env.store() as store:
                    submit(store, KIND, eval_payload(loaded.name, label=label, baseline=baseline, cache=cache), tenant)
                return
            variants = matrix(prompt_versions, models)
            if label and len(variants) > 1:
                raise UserError("--label names one run; a matrix makes several (label the winner's run later)")
            outcomes = asyncio.run(_run(env, root, loaded, variants, baseline, label, concurrency, cache, tenant))
        except KeelError as exc:
            console.print(f"[red]error:[/red] {exc.message}", highlight=False)
            sys.exit(ERRORED)
        comparison = compare(outcomes)
        if junit is not None:
            _junit(outcomes, junit)
        if html is not None:
            write_html(outcomes, html, comparison=comparison)
        if json:
            body: dict[str, object] = (
                {"run": outcomes[0].run, "gate": outcomes[0].rules, "deltas": outcomes[0].deltas}
                if len(outcomes) == 1
                else {"matrix": outcomes, "comparison": comparison}
            )
            print(orjson.dumps(body, default=_plain).decode())
        else:
            for outcome in outcomes:
                _show(loaded, outcome)
            if len(outcomes) > 1:
                _show_matrix(outcomes, comparison)
        sys.exit(max(_exit_code(o) for o in outcomes))

    group = typer.Typer(help="Eval suites: grow them from production feedback.", no_args_is_help=True)
    app.add_typer(group, name="evals")

    @group.command("promote")
    def promote_cmd(
        suite: str = typer.Argument(..., help="a suite: evals/<name>.yaml under --root, or a path"),
        from_feedback: bool = typer.Option(
            False, "--from-feedback", help="promote runs with corrections or low scores"
        ),
        from_reviews: bool = typer.Option(
            False, "--from-reviews", help="promote review decisions: approved and edited answers, rejects"
        ),
        from_monitors: bool = typer.Option(
            False, "--from-monitors", help="promote live runs a monitor's checks failed (keel monitor)"
        ),
        since: str = typer.Option("7d", help="feedback newer than this: 7d, 24h or a date"),
        below: float | None = typer.Option(None, help="numeric scores under this count as low (else the config's)"),
        limit: int = typer.Option(50, min=1, max=1000, help="at most this many new cases"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the cases; change nothing"),
        root: Path = typer.Option(Path("."), help="the project folder holding evals/"),
        tenant: str = TENANT,
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
    ) -> None:
        """Turn production runs with corrections or low scores — or reviewers' decisions — into eval
        cases (redacted, de-duplicated, each trace once)."""
        if [from_feedback, from_reviews, from_monitors].count(True) != 1:
            raise UserError(
                "say where cases come from: --from-feedback, --from-reviews or --from-monitors (one of them)"
            )
        env = load_env(config)
        path = find_suite(root, suite)
        loaded = load_suite(path)
        with env.store() as store:
            if from_monitors:
                found, uncaptured = promote.monitor_candidates(
                    store, loaded.spec.feature, since=parse_since(since), tenant=tenant
                )
            else:
                found, uncaptured = promote.find_candidates(
                    store,
                    loaded.spec.feature,
                    since=parse_since(since),
                    scores=env.settings.feedback,
                    below=below,
                    tenant=tenant,
                    reviews=from_reviews,
                )
            outcome = promote.plan(store, loaded, found, uncaptured, tenant)
            chosen = outcome.added[:limit]
            if chosen and not dry_run:
                promote.append_cases(path, chosen)
                promote.record(store, loaded, chosen, tenant)
        table = Table("case", "inputs", "expected", "why", title=f"{len(chosen)} new case(s) for {loaded.name}")
        for c in chosen:
            inputs = orjson.dumps(c.inputs).decode()
            table.add_row(c.case_id, inputs[:70], (c.correction or "[dim](needs one)[/dim]")[:60], ", ".join(c.why))
        if chosen:
            console.print(table)
        skipped = [
            f"{outcome.duplicates} duplicate(s) of existing cases" if outcome.duplicates else "",
            f"{outcome.already} promoted before" if outcome.already else "",
            f"{outcome.uncaptured} without captured inputs (tracing.capture: off)" if outcome.uncaptured else "",
            f"{len(outcome.added) - len(chosen)} over --limit" if len(outcome.added) > len(chosen) else "",
        ]
        shown = "; ".join(x for x in skipped if x)
        verb = "would append" if dry_run else "appended"
        console.print(
            f"{verb} {len(chosen)} case(s) to {path}" + (f" (skipped: {shown})" if shown else ""), highlight=False
        )


def matrix(prompt_versions: str | None, models: str | None) -> list[Variant]:
    """``--prompt-versions 6,7 --models fast,accurate`` → every pairing, in that order."""
    versions: list[int | None] = [None]
    if prompt_versions is not None:
        try:
            versions = [int(v) for v in _items(prompt_versions, "--prompt-versions")]
        except ValueError:
            raise UserError(f"--prompt-versions takes version numbers such as 6,7, not {prompt_versions!r}") from None
        if any(v is not None and v < 1 for v in versions):
            raise UserError("prompt versions start at 1")
    names: list[str | None] = list(_items(models, "--models")) if models is not None else [None]
    variants = [Variant(v, m) for v in versions for m in names]
    if len(set(variants)) != len(variants):
        raise UserError("the matrix names a variant twice")
    return variants


def _items(text: str, flag: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise UserError(f"{flag} is a comma-separated list without empty items, not {text!r}")
    return items


def _plain(value: object) -> object:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError


def _exit_code(outcome: Outcome) -> int:
    run = outcome.run
    if run.summary.errors or run.summary.partial or not run.results:
        return ERRORED
    return PASSED if all(r.passed for r in outcome.rules) else GATE_FAILED


async def _run(
    env: Env,
    root: Path,
    suite: Suite,
    variants: list[Variant],
    baseline: str | None,
    label: str | None,
    concurrency: int | None,
    use_cache: bool,
    tenant: str,
) -> list[Outcome]:
    async with open_pipeline(env.settings, env.home, root) as pipeline:
        evals = pipeline.store.evals
        require_feature(pipeline, suite, tenant)
        for variant in variants:
            if variant.model is not None:
                pipeline.service.gateway.route(variant.model)  # an unknown model fails before any call
        before = baseline_run(evals, suite.name, baseline, tenant)
        cache = ResultCache(evals, tenant) if use_cache else None
        outcomes: list[Outcome] = []
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True, disable=not sys.stderr.isatty()) as bar:
            for variant in variants:
                title = f"eval {suite.name}" + (f" [{variant.name}]" if variant.name else "")
                task = bar.add_task(title, total=len(suite.spec.cases))
                run = await run_suite(
                    pipeline,
                    suite,
                    concurrency=concurrency,
                    progress=lambda _, task=task: bar.advance(task),  # type: ignore[misc]
                    variant=variant,
                    cache=cache,
                    tenant=tenant,
                )
                run.label = label if not run.summary.partial else None
                save_run(evals, run, tenant)
                changes = deltas(run, before) if before is not None else []
                outcomes.append(Outcome(run, apply_gate(suite, run, before), changes))
                if run.summary.partial:
                    break  # Ctrl-C: the remaining variants do not start
        return outcomes


def _show(suite: Suite, outcome: Outcome) -> None:
    run, rules, changes = outcome.run, outcome.rules, outcome.deltas
    title = f"{suite.name} → {suite.spec.feature}" + (f" [{run.summary.variant}]" if run.summary.variant else "")
    table = Table("case", "result", "score", "checks", "ms", "cost", title=title)
    for r in run.results:
        if r.error:
            result, detail = "[red]error[/red]", r.error
        else:
            result = "[green]pass[/green]" if r.passed else "[red]fail[/red]"
            failed = [f"{c.check}: {c.reason}" for c in r.checks if not c.passed]
            detail = "; ".join(failed) or f"{len(r.checks)} passed"
        ms = f"{r.latency_ms:.0f}" if r.latency_ms is not None else "—"
        cost = fmt_cost(r.cost_usd) + (" (cached)" if r.cached else "")
        table.add_row(r.case_id, result, f"{r.score:.2f}", detail[:120], ms, cost)
    console.print(table)
    s = run.summary
    p95 = f"{s.p95_ms:.0f} ms" if s.p95_ms is not None else "—"
    judged = f" + judge {fmt_cost(s.judge_cost_usd)} ({s.judge_calls} calls)" if s.judge_calls else ""
    cached = f"; {s.cached} replayed from the cache, paid {fmt_cost(s.spent_usd)}" if s.cached else ""
    console.print(
        f"run {run.id}: {s.passed}/{s.cases} passed ({s.pass_rate:.1%}), mean score {s.mean_score:.3f}, "
        f"{s.errors} error(s), cost {fmt_cost(s.cost_usd)}{judged}{cached}, p95 {p95}"
        + (" [yellow]PARTIAL[/yellow]" if s.partial else ""),
        highlight=False,
    )
    for d in changes:
        sign = "[yellow]significant[/yellow]" if d.significant else "within noise"
        console.print(
            f"  Δ {d.metric}: {d.change:+.3g} [95% CI {d.low:+.3g} … {d.high:+.3g}] over {d.cases} cases — {sign}",
            highlight=False,
        )
    for rule in rules:
        mark = "[green]✓[/green]" if rule.passed else "[red]✗[/red]"
        console.print(f"  {mark} {rule.name}: {rule.detail}", highlight=False)
    code = _exit_code(outcome)
    verdict = {PASSED: "[green]gate passed[/green]", GATE_FAILED: "[red]gate failed[/red]"}.get(
        code, "[red]errors[/red]"
    )
    console.print(f"{verdict} (exit {code})")


def _show_matrix(outcomes: list[Outcome], comparison: list[list[MetricDelta]]) -> None:
    checks = sorted({c for o in outcomes for c in o.run.summary.check_scores})
    table = Table("variant", "pass rate", "mean score", *checks, "cost/case", "p95 ms", "gate", title="matrix")
    for i, o in enumerate(outcomes):
        s = o.run.summary
        change = next((d for d in comparison[i] if d.metric == "pass rate"), None) if i else None
        rate = f"{s.pass_rate:.0%}" + (f" ({change.change:+.0%}{'*' if change.significant else ''})" if change else "")
        per_case = s.cost_usd / s.cases if s.cases else 0.0
        code = _exit_code(o)
        table.add_row(
            s.variant or "default",
            rate,
            f"{s.mean_score:.3f}",
            *(f"{s.check_scores[c]:.2f}" if c in s.check_scores else "—" for c in checks),
            fmt_cost(per_case),
            f"{s.p95_ms:.0f}" if s.p95_ms is not None else "—",
            {PASSED: "[green]pass[/green]", GATE_FAILED: "[red]fail[/red]"}.get(code, "[red]error[/red]"),
        )
    console.print(table)
    console.print("  changes are vs the first variant, paired by case; * = beyond the 95% bootstrap interval")


def _junit(outcomes: list[Outcome], path: Path) -> None:
    root = ET.Element("testsuites")
    for outcome in outcomes:
        run = outcome.run
        name = f"keel.{run.suite}" + (f"[{run.summary.variant}]" if run.summary.variant else "")
        failures = sum(not r.passed and r.error is None for r in run.results)
        errors = sum(r.error is not None for r in run.results)
        suite = ET.SubElement(
            root, "testsuite", name=name, tests=str(len(run.results) + 1), failures=str(failures), errors=str(errors)
        )
        for r in run.results:
            case = ET.SubElement(suite, "testcase", classname=name, name=r.case_id,
                                 time=f"{(r.latency_ms or 0) / 1000:.3f}")  # fmt: skip
            if r.error:
                ET.SubElement(case, "error", message=r.error[:500])
            elif not r.passed:
                reasons = "; ".join(f"{c.check}: {c.reason}" for c in r.checks if not c.passed)
                ET.SubElement(case, "failure", message=reasons[:500]).text = r.output[:2000]
        gate = ET.SubElement(suite, "testcase", classname=name, name="gate")
        failed = [f"{r.name}: {r.detail}" for r in outcome.rules if not r.passed]
        if failed:
            ET.SubElement(gate, "failure", message="; ".join(failed)[:1000])
            suite.set("failures", str(failures + 1))
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in root)))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
