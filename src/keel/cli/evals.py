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

from keel.cli.common import Env, console, fmt_cost, load_env
from keel.errors import KeelError
from keel.evals.report import write_html
from keel.evals.runner import Delta, EvalRun, Rule, deltas, judge, load_run, require_feature, run_suite, save_run
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
        json: bool = typer.Option(False, "--json", help="print the run as JSON"),
        junit: Path | None = typer.Option(None, help="write JUnit XML here"),
        html: Path | None = typer.Option(None, help="write a self-contained HTML report here"),
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
    ) -> None:
        """Run a suite; exit 0 when the gate passes, 100 when it fails, 1 on errors."""
        try:
            env = load_env(config)
            loaded = load_suite(find_suite(root, suite))
            run, rules, changes = asyncio.run(_run(env, root, loaded, baseline, label, concurrency))
        except KeelError as exc:
            console.print(f"[red]error:[/red] {exc.message}", highlight=False)
            sys.exit(ERRORED)
        if junit is not None:
            _junit(run, rules, junit)
        if html is not None:
            write_html(run, rules, changes, html)
        if json:
            print(orjson.dumps({"run": run, "gate": rules, "deltas": changes}, default=_plain).decode())
        else:
            _show(loaded, run, rules, changes)
        sys.exit(_exit_code(run, rules))


def _plain(value: object) -> object:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError


def _exit_code(run: EvalRun, rules: list[Rule]) -> int:
    if run.summary.errors or run.summary.partial or not run.results:
        return ERRORED
    return PASSED if all(r.passed for r in rules) else GATE_FAILED


async def _run(
    env: Env, root: Path, suite: Suite, baseline: str | None, label: str | None, concurrency: int | None
) -> tuple[EvalRun, list[Rule], list[Delta]]:
    async with open_pipeline(env.settings, env.home, root) as pipeline:
        conn = pipeline.registry.conn
        require_feature(pipeline, suite)
        before = load_run(conn, suite.name, baseline) if baseline else None
        if baseline and before is None:
            raise KeelError(f"no baseline run '{baseline}' for suite '{suite.name}' (label a run with --label)")
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task(f"eval {suite.name}", total=len(suite.spec.cases))
            run = await run_suite(pipeline, suite, concurrency=concurrency, progress=lambda _: bar.advance(task))
        run.label = label if not run.summary.partial else None
        save_run(conn, run)
        return run, judge(suite, run, before), deltas(run, before) if before is not None else []


def _show(suite: Suite, run: EvalRun, rules: list[Rule], changes: list[Delta]) -> None:
    table = Table("case", "result", "score", "checks", "ms", "cost", title=f"{suite.name} → {suite.spec.feature}")
    for r in run.results:
        if r.error:
            result, detail = "[red]error[/red]", r.error
        else:
            result = "[green]pass[/green]" if r.passed else "[red]fail[/red]"
            failed = [f"{c.check}: {c.reason}" for c in r.checks if not c.passed]
            detail = "; ".join(failed) or f"{len(r.checks)} passed"
        ms = f"{r.latency_ms:.0f}" if r.latency_ms is not None else "—"
        table.add_row(r.case_id, result, f"{r.score:.2f}", detail[:120], ms, fmt_cost(r.cost_usd))
    console.print(table)
    s = run.summary
    p95 = f"{s.p95_ms:.0f} ms" if s.p95_ms is not None else "—"
    console.print(
        f"run {run.id}: {s.passed}/{s.cases} passed ({s.pass_rate:.1%}), mean score {s.mean_score:.3f}, "
        f"{s.errors} error(s), cost {fmt_cost(s.cost_usd)}, p95 {p95}"
        + (" [yellow]PARTIAL[/yellow]" if s.partial else "")
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
    code = _exit_code(run, rules)
    verdict = {PASSED: "[green]gate passed[/green]", GATE_FAILED: "[red]gate failed[/red]"}.get(
        code, "[red]errors[/red]"
    )
    console.print(f"{verdict} (exit {code})")


def _junit(run: EvalRun, rules: list[Rule], path: Path) -> None:
    failures = sum(not r.passed and r.error is None for r in run.results)
    errors = sum(r.error is not None for r in run.results)
    suite = ET.Element(
        "testsuite", name=f"keel.{run.suite}", tests=str(len(run.results)), failures=str(failures), errors=str(errors)
    )
    for r in run.results:
        case = ET.SubElement(suite, "testcase", classname=f"keel.{run.suite}", name=r.case_id,
                             time=f"{(r.latency_ms or 0) / 1000:.3f}")  # fmt: skip
        if r.error:
            ET.SubElement(case, "error", message=r.error[:500])
        elif not r.passed:
            reasons = "; ".join(f"{c.check}: {c.reason}" for c in r.checks if not c.passed)
            ET.SubElement(case, "failure", message=reasons[:500]).text = r.output[:2000]
    gate = ET.SubElement(suite, "testcase", classname=f"keel.{run.suite}", name="gate")
    failed = [f"{r.name}: {r.detail}" for r in rules if not r.passed]
    if failed:
        ET.SubElement(gate, "failure", message="; ".join(failed)[:1000])
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
