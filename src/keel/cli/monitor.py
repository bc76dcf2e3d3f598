"""``keel monitor status|sweep|alerts|backfill``: quality on live traffic in the terminal. ``status`` first reads
the runs traced since the last sweep (so it is current without a server), then prints each
monitor's signals — current value, reference value, test, adjusted p, verdict — with what changed
in the window and how its evaluators are doing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.table import Table

from keel.cli.common import TENANT, console, fmt_ts, load_env
from keel.errors import UserError
from keel.text import usd

if TYPE_CHECKING:
    from keel.monitor.watch import Status

CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")
app = typer.Typer(help="Online evals and drift: how live runs compare with their reference.", no_args_is_help=True)
COLOURS = {"drop": "red", "drift": "yellow", "improved": "green", "ok": "green"}


def _figure(value: float | None, kind: str) -> str:
    if value is None:
        return "—"
    if kind in ("rate", "category"):
        return f"{value:.1%}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def status_json(s: Status) -> dict[str, Any]:
    return {
        "feature": s.feature,
        "monitor": s.monitor,
        "window": {"start": s.window[0], "end": s.window[1]},
        "reference": s.reference,
        "signals": [v.as_dict() for v in s.verdicts],
        "alerts": [{"signal": v.signal.name, "message": s.message(v)} for v in s.alarms],
        "changes": [{"kind": c.kind, "value": c.value, "at": c.at} for c in s.changes],
        "evaluators": [
            {"check": e.check, "ok": e.ok, "errors": e.errors, "skipped": e.skipped, "last_error": e.last_error}
            for e in s.evaluators
        ],
        "judge_spent_today_usd": s.spent_today,
        "judge_budget_usd_day": s.spec.budget_usd_day,
        "notes": s.notes,
    }


def _print(s: Status) -> None:
    title = f"{s.feature} · monitor '{s.monitor}' · {fmt_ts(s.window[0])} → now, against {s.reference}"
    table = Table("signal", "current", "reference", "n", "test", "adj. p", "verdict", title=title)
    from keel.monitor.compare import ranked, short_p

    for v in ranked(s.verdicts):
        colour = COLOURS.get(v.verdict)
        verdict = f"[{colour}]{v.verdict}[/{colour}]" if colour else f"[dim]{v.verdict}[/dim]"
        kind = v.signal.kind
        figures = (_figure(v.current, kind), _figure(v.reference, kind), f"{v.n}/{v.n_reference}")
        table.add_row(v.signal.label, *figures, v.test or "—", short_p(v.adjusted_p), verdict)
    console.print(table)
    for v in s.alarms:
        console.print(f"[red]alert[/red] {s.message(v)}")
    for c in s.changes:
        console.print(f"change: {c.describe()}")
    for e in s.evaluators:
        line = f"evaluator {e.check}: {e.ok} scored, {e.errors} errors, {e.skipped} skipped"
        if e.failing:
            line = f"[red]{line} — failing on every sampled run: {e.last_error}[/red]"
        elif e.errors:
            line += f" (last error: {e.last_error})"
        console.print(line)
    if s.spec.checks:
        console.print(f"judges today: {usd(s.spent_today)} of {usd(s.spec.budget_usd_day)} a day")
    for note in s.notes:
        console.print(f"[yellow]note[/yellow] {note}")


@app.command()
def status(
    feature: str | None = typer.Argument(None, help="one feature (default: every feature with recent runs)"),
    json: bool = typer.Option(False, "--json"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Each monitor's signals now: current window against its reference, with verdicts."""
    from keel.monitor.sweeper import FIRST_LOOK_S, Monitors
    from keel.monitor.watch import feature_status

    env = load_env(config)
    now = time.time()
    with env.store() as store:
        Monitors(store, env.settings, env.settings.project_root).read_traces(now)
        features = [feature] if feature else store.monitors.features(tenant, now - FIRST_LOOK_S)
        if not features:
            raise UserError("no feature runs in the last 8 days to compare; run a feature (keel run NAME) first")
        root = env.settings.project_root
        found = [s for name in features for s in feature_status(store, root, tenant, name, now, env.settings)]
    if json:
        console.print_json(orjson.dumps([status_json(s) for s in found]).decode())
        return
    for s in found:
        _print(s)


@app.command()
def sweep(tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """Read new runs and compare now, opening and closing alerts (what the server does every 5 minutes)."""
    from keel.monitor.sweeper import Monitors

    env = load_env(config)
    with env.store() as store:
        monitors = Monitors(store, env.settings, env.settings.project_root)
        read, found = monitors.sweep()
        open_now = store.monitors.open_alerts(tenant)
    console.print(f"read {read} runs; compared {len(found)} monitors; {monitors.opened} alerts opened")
    for a in open_now:
        console.print(f"[red]open[/red] {a.feature} {a.signal}: {a.message}")


@app.command()
def alerts(
    feature: str | None = typer.Argument(None),
    since: str = typer.Option("7d", help="closed alerts newer than this are listed too"),
    json: bool = typer.Option(False, "--json"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Alerts, open ones first."""
    from keel.timespan import parse_since

    env = load_env(config)
    with env.store() as store:
        rows = store.monitors.alerts(tenant, feature, since=parse_since(since) or 0.0)
    rows.sort(key=lambda a: (a.closed is not None, -a.opened))
    if json:
        shown = [{"id": a.id, "feature": a.feature, "signal": a.signal, "opened": a.opened, "closed": a.closed,
                  "message": a.message, "detail": a.detail} for a in rows]  # fmt: skip
        console.print_json(orjson.dumps(shown).decode())
        return
    table = Table("opened", "feature", "signal", "state", "message", title=f"monitor alerts: {tenant}")
    for a in rows:
        state = "[red]open[/red]" if a.closed is None else f"closed {fmt_ts(a.closed)}"
        table.add_row(fmt_ts(a.opened), a.feature, a.signal, state, a.message)
    console.print(table if rows else "no alerts")


@app.command()
def backfill(
    feature: str | None = typer.Argument(None, help="one feature (default: every feature with monitors)"),
    since: str = typer.Option("7d", help="score runs newer than this: 7d, 24h or a date"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count the runs that would be scored; score none"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Score past runs with their monitors' checks: the runs a live sample would have drawn, not
    scored yet, under the same daily judge budget."""
    import asyncio
    from collections import Counter

    from rich.progress import Progress

    from keel.monitor.backfill import due
    from keel.timespan import parse_since

    env = load_env(config)
    root = env.settings.project_root
    start = parse_since(since) or 0.0
    with env.store() as store:
        todo = list(due(store, root, tenant, start, feature=feature))
    if dry_run or not todo:
        per = Counter(f"{name}/{p['monitor']}" for name, p in todo)
        listed = ", ".join(f"{k}: {n}" for k, n in sorted(per.items())) or "none"
        console.print(f"{'would score' if dry_run else 'nothing to score:'} {len(todo)} runs ({listed})")
        return

    async def score_all() -> Counter[str]:
        from keel.features.pipeline import open_pipeline
        from keel.monitor.scoring import score_run

        counts: Counter[str] = Counter()
        async with open_pipeline(env.settings, env.home, root) as pipe:
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("scoring past runs", total=len(todo))
                for name, payload in todo:
                    for s in await score_run(pipe, tenant, name, payload):
                        counts["failed" if s.passed is False else s.status] += 1
                        counts["cost_nusd"] += int((s.cost_usd or 0.0) * 1e9)
                    bar.advance(task)
        return counts

    counts = asyncio.run(score_all())
    table = Table("runs", "checks passed", "failed", "errors", "skipped (budget)", "judges spent",
                  title=f"backfill since {since}")  # fmt: skip
    table.add_row(str(len(todo)), str(counts["ok"]), str(counts["failed"]), str(counts["error"]),
                  str(counts["skipped"]), usd(counts["cost_nusd"] / 1e9))  # fmt: skip
    console.print(table)
