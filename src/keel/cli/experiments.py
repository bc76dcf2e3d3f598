"""``keel experiments start|list|report|stop``: A/B tests between prompt versions and/or models."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from keel.cli.common import TENANT, console, fmt_cost, fmt_ts, load_env
from keel.features.experiments import ArmStats, Experiments, parse_arms, report
from keel.features.prompts import DEFAULT_LABEL, PromptRegistry
from keel.features.spec import load_feature
from keel.stats import Interval

app = typer.Typer(help="A/B experiments: sticky arms, per-arm reports with confidence intervals.", no_args_is_help=True)
CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")
ROOT = typer.Option(Path("."), help="the project folder holding features/ and prompts/")


@contextmanager
def _open(config: str | None, root: Path, tenant: str) -> Iterator[tuple[Experiments, PromptRegistry]]:
    with load_env(config).store() as store:
        yield Experiments(store, tenant), PromptRegistry(store.prompts, root / "prompts")


@app.command("start")
def start(
    name: str = typer.Argument(..., help="a name for the experiment"),
    feature: str = typer.Option(..., "--feature", "-f", help="the feature whose traffic is split"),
    arms: list[str] = typer.Option(
        ...,
        "--arm",
        help="NAME[:version=N,model=ALIAS,weight=W] (repeat; the first arm is the control; weights given to "
        "only some arms are percentages, the rest share what is left)",
    ),
    root: Path = ROOT,
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Split a tenant's traffic on a feature between arms; each user always sees the same arm."""
    with _open(config, root, tenant) as (experiments, registry):
        spec = load_feature(root, feature)
        registry.record_file(root / "prompts" / f"{spec.prompt}.md")
        experiment = experiments.start(name, feature, parse_arms(arms), registry)
    total = sum(a.weight for a in experiment.arms)
    for arm in experiment.arms:
        serves = ", ".join(
            filter(None, [f"prompt v{arm.version}" if arm.version else "", f"model {arm.model}" if arm.model else ""])
        )
        console.print(f"  {arm.name}: {arm.weight / total:.0%} — {serves or 'the production label'}")
    console.print(f"experiment '{name}' is running on '{feature}'; runs with a user are assigned by (experiment, user)")


@app.command("list")
def list_(tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """Experiments, newest first."""
    with _open(config, Path("."), tenant) as (experiments, _):
        found = experiments.list()
    table = Table("experiment", "feature", "status", "arms", "started", "winner")
    for e in found:
        table.add_row(e.name, e.feature, e.status, ", ".join(a.name for a in e.arms), fmt_ts(e.started), e.winner or "")
    console.print(table if table.row_count else "no experiments yet: keel experiments start …")


def _ci(interval: Interval | None, fmt: str = "{:.3g}") -> str:
    if interval is None:
        return "—"
    return f"{fmt.format(interval.value)} [{fmt.format(interval.low)}–{fmt.format(interval.high)}]"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _cost(stats: ArmStats) -> str:
    if stats.cost_per_call is None:
        return "unpriced" if stats.unpriced else "—"
    c = stats.cost_per_call
    return f"{fmt_cost(c.value)} [{fmt_cost(c.low)}–{fmt_cost(c.high)}]"


@app.command("report")
def report_cmd(name: str, tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """Per-arm runs, cost per call, latency p50/p95, error rate and feedback, with 95% intervals."""
    with _open(config, Path("."), tenant) as (experiments, _):
        experiment = experiments.get(name)
        assert experiment is not None
        result = report(experiments.store, experiment)
    feedback = f"feedback ({result.feedback_name})" if result.feedback_name else "feedback"
    table = Table(
        "arm", "serves", "runs", "error rate", "cost / call", "p50 ms", "p95 ms", feedback, "eval score",
        title=f"{name} on {experiment.feature} · {experiment.status} since {fmt_ts(experiment.started)}",
    )  # fmt: skip
    for stats in result.arms:
        arm = stats.arm
        serves = " ".join(filter(None, [f"v{arm.version}" if arm.version else "", arm.model or ""])) or "label"
        table.add_row(
            arm.name,
            serves,
            str(stats.runs),
            _ci(stats.error_rate, "{:.1%}"),
            _cost(stats),
            _ms(stats.p50_ms),
            _ms(stats.p95_ms),
            f"{_ci(stats.feedback, '{:.2f}')} n={stats.feedback_n}" if stats.feedback_n else "—",
            _ci(stats.eval_score, "{:.2f}"),
        )
    console.print(table)
    for c in result.comparisons:
        mark = "—" if c.better is None else ("[green]better[/green]" if c.better else "[red]worse[/red]")
        console.print(f"  {c.arm} vs {result.arms[0].arm.name} · {c.metric}: Δ {c.difference} {mark}")
    colour = "green" if result.winner else "yellow"
    console.print(f"[{colour}]{result.verdict}[/{colour}]" + (f" → winner: {result.winner}" if result.winner else ""))


@app.command("stop")
def stop(
    name: str,
    promote: str | None = typer.Option(
        None, help="an arm to promote, or 'winner' (only if the report found a significant one)"
    ),
    label: str = typer.Option(DEFAULT_LABEL, help="the label the promoted arm's prompt version moves to"),
    root: Path = ROOT,
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Stop the experiment; with --promote, move the label to the chosen arm's prompt version."""
    with _open(config, root, tenant) as (experiments, registry):
        _, done = experiments.stop(name, promote=promote, label=label, registry=registry)
    console.print(
        f"experiment '{name}' {done}" if done.startswith("stopped") else f"experiment '{name}' stopped; {done}"
    )
