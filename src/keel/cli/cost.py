"""``keel cost``: what calls cost (report), what they will cost (model), and ``keel prices``.

keel cost report --by feature,user,model --since 7d --target 0.01 --html cost.html
keel cost model --users 50000 --since 30d --budget 2000
keel prices show gpt-4o
keel prices update my-prices.yaml
"""

from __future__ import annotations

import datetime as dt
import shutil
from html import escape
from pathlib import Path

import orjson
import typer
from rich.table import Table

from keel.charts import CSS, bars
from keel.cli.common import console, fmt_cost, load_env, parse_since
from keel.cost.prices import PriceTable
from keel.cost.projection import project
from keel.errors import UserError

CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")
BY = typer.Option("model", help="comma-separated: model, deployment, tenant, user, feature, day")
SINCE = typer.Option(None, help="e.g. 7d, 24h or 2026-11-01")


def price_table(config: str | None) -> PriceTable:
    env = load_env(config)
    installed = env.home / "prices.yaml"
    return PriceTable.load(env.settings.prices or (installed if installed.is_file() else None))


def register(app: typer.Typer) -> None:
    cost = typer.Typer(help="What calls cost, and what they will cost.", invoke_without_command=True)
    app.add_typer(cost, name="cost")

    @cost.callback()
    def default(ctx: typer.Context, by: str = BY, since: str | None = SINCE, config: str | None = CONFIG) -> None:
        """With no subcommand: the report (`keel cost report`)."""
        if ctx.invoked_subcommand is None:
            show_report(by, since, None, None, config)

    @cost.command("report")
    def report_cmd(
        by: str = BY,
        since: str | None = SINCE,
        target: float | None = typer.Option(None, min=0, help="cost per interaction to stay under, in USD"),
        html: Path | None = typer.Option(None, help="also write an HTML report with a chart"),
        config: str | None = CONFIG,
    ) -> None:
        """Spend grouped your way: provider-reported and estimated cost apart, per interaction."""
        show_report(by, since, target, html, config)

    @cost.command("model")
    def model_cmd(
        users: int | None = typer.Option(None, min=1, help="users to project for (default: 10× those observed)"),
        since: str = typer.Option("30d", help="the traffic to learn from"),
        feature: str | None = typer.Option(None, help="only this feature's calls"),
        budget: float | None = typer.Option(None, min=0, help="a monthly budget in USD: when is it spent?"),
        json: bool = typer.Option(False, "--json", help="print the projection as JSON"),
        config: str | None = CONFIG,
    ) -> None:
        """Project monthly spend from logged traffic, with a pessimistic case and the break-even."""
        with load_env(config).store() as store:
            rows = store.traces.traffic(since=parse_since(since), feature=feature)
        p = project(rows, price_table(config))
        if p is None:
            scope = f" for {feature}" if feature else ""
            raise UserError(f"no successful model calls since {since}{scope}: nothing to project from")
        scale = users or p.users * 10
        if json:
            data = {
                "projection": {k: getattr(p, k) for k in p.__slots__ if k != "alternatives"},
                "users": scale,
                "monthly": p.monthly(scale),
                "monthly_pessimistic": p.monthly(scale, pessimistic=True),
                "alternatives": [
                    {"model": a.model, "cost_per_call": a.cost_per_call, "monthly": a.per_user_month * scale}
                    for a in p.alternatives
                ],
            }
            print(orjson.dumps(data).decode())
            return
        seen = Table("observed", "value", title=f"traffic since {since}" + (f" ({feature})" if feature else ""))
        seen.add_row("model calls", f"{p.calls:,} over {p.days:.1f} days")
        seen.add_row("users", f"{p.users:,}")
        seen.add_row("calls per user per day", f"{p.calls_per_user_day:.2f} (p90 user {p.calls_per_user_day_p90:.2f})")
        seen.add_row("tokens per call", f"{p.input_tokens:,.0f} in + {p.output_tokens:,.0f} out "
                     f"(p90 {p.input_tokens_p90:,.0f} + {p.output_tokens_p90:,.0f})")  # fmt: skip
        seen.add_row("cost per call", f"{fmt_cost(p.cost_per_call)} (p90 {fmt_cost(p.cost_per_call_p90)})")
        seen.add_row("models", ", ".join(f"{m} ({n})" for m, n in p.models.items()))
        if p.unpriced_calls:
            seen.add_row("unpriced calls", f"[yellow]{p.unpriced_calls} (counted at $0)[/yellow]")
        console.print(seen)
        steps = sorted({max(1, p.users), scale // 10 or 1, scale // 2 or 1, scale, scale * 2})
        top = p.monthly(max(steps), pessimistic=True) or 1.0
        table = Table("users", "expected / month", "pessimistic / month", "", title="projection (30-day month)")
        for n in steps:
            expected, worst = p.monthly(n), p.monthly(n, pessimistic=True)
            bar = "█" * max(0, round(28 * worst / top))
            table.add_row(f"{n:,}" + (" ← target" if n == scale else ""), fmt_cost(expected), fmt_cost(worst), bar)
        console.print(table)
        if budget is not None:
            even, worst_even = p.break_even(budget), p.break_even(budget, pessimistic=True)
            if even is None:
                console.print(f"a ${budget:,.2f} monthly budget is never spent: these calls cost nothing")
            else:
                short = (worst_even or 0) < scale
                warn = " — [red]below the target: you need a budget or a cheaper tier[/red]" if short else ""
                console.print(
                    f"a ${budget:,.2f} monthly budget is spent at [bold]{even:,}[/bold] users "
                    f"({worst_even:,} in the pessimistic case){warn}",
                    highlight=False,
                )
        alternatives = Table("model", "cost per call", f"monthly at {scale:,} users", "vs now",
                             title="the same tokens on other models (price table)")  # fmt: skip
        now = p.monthly(scale)
        for a in p.alternatives[:8]:
            monthly = a.per_user_month * scale
            change = f"{monthly / now - 1:+.0%}" if now > 0 else "—"
            alternatives.add_row(a.model, fmt_cost(a.cost_per_call), fmt_cost(monthly), change)
        console.print(alternatives)

    prices = typer.Typer(help="The price table behind every cost.", no_args_is_help=True)
    app.add_typer(prices, name="prices")

    @prices.command("show")
    def prices_show(
        model: str | None = typer.Argument(None, help="only models containing this"), config: str | None = CONFIG
    ) -> None:
        """Prices per 1M tokens, with the date each took effect."""
        table_ = price_table(config)
        out = Table(
            "model",
            "effective",
            "input",
            "cached input",
            "output",
            title=f"price table {table_.version} (USD per 1M tokens)",
        )
        for name, entries in sorted(table_.models.items()):
            if model is not None and model.lower() not in name.lower():
                continue
            for e in entries:
                cached = f"{e.cached_input:g}" if e.cached_input is not None else "—"
                out.add_row(name, e.effective.isoformat(), f"{e.input:g}", cached, f"{e.output:g}")
        console.print(out if out.row_count else f"no model matching '{model}' in price table {table_.version}")

    @prices.command("update")
    def prices_update(
        file: Path = typer.Argument(
            ..., help="a price table YAML (version, models: {name: [{effective, input, output}]})"
        ),
        config: str | None = CONFIG,
    ) -> None:
        """Validate a price table and install it as this home's ($KEEL_HOME/prices.yaml)."""
        if not file.is_file():
            raise UserError(f"no price table {file}")
        new = PriceTable.load(file)  # a broken table fails here, naming the line
        env = load_env(config)
        if env.settings.prices is not None:
            raise UserError(f"keel.yaml sets prices: {env.settings.prices}; edit that file instead (it wins)")
        old = price_table(config)
        env.home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, env.home / "prices.yaml")
        added = sorted(set(new.models) - set(old.models))
        console.print(f"installed price table {new.version} ({len(new.models)} models; was {old.version})"
                      + (f"; new: {', '.join(added[:8])}" if added else ""), highlight=False)  # fmt: skip


def show_report(by: str, since: str | None, target: float | None, html: Path | None, config: str | None) -> None:
    dims = [d.strip() for d in by.split(",") if d.strip()]
    start = parse_since(since)
    env = load_env(config)
    settings = env.settings
    known = {  # a row naming none of these was asked for but never served (e.g. a refused model name)
        "model": {*settings.models, *settings.deployments, *(d.model for d in settings.deployments.values())},
        "deployment": set(settings.deployments),
    }
    with env.store() as store:
        rows = store.traces.cost_summary(dims, since=start)
        runs = store.traces.interactions(dims, since=start)
    if not rows:
        console.print("no calls recorded in that window")
        return
    total = sum(r["cost_usd"] or 0 for r in rows) or 0.0
    per_run = bool(runs)
    table = Table(
        *dims, "calls", "errors", "tokens in / out", "reported", "estimated", "share",
        *(["per interaction"] if per_run else []), "avg latency",
        title="cost — reported: provider usage × price table · estimated: usage Keel counted · local models cost 0",
    )  # fmt: skip
    for r in rows:
        unpriced = f" [yellow]({r['unpriced']} unpriced)[/yellow]" if r["unpriced"] else ""
        share = (r["cost_usd"] or 0) / total if total else 0.0
        cells = [*[_cell(d, r[d], known) for d in dims], str(r["calls"]), str(r["errors"]),
                 f"{r['input_tokens']:,} / {r['output_tokens']:,}", fmt_cost(r["reported_usd"]) + unpriced,
                 fmt_cost(r["estimated_usd"]) if r["estimated_usd"] else "—",
                 f"{'█' * round(share * 20):<20} {share:.0%}"]  # fmt: skip
        if per_run:
            found = runs.get(tuple(r[d] for d in dims))
            cells.append(_per_run(found, target))
        cells.append(f"{r['avg_latency_ms'] or 0:.0f} ms")
        table.add_row(*cells)
    table.add_section()
    table.add_row("total", *[""] * (len(dims) - 1), str(sum(r["calls"] for r in rows)), "", "", fmt_cost(total))
    console.print(table)
    if target is not None and not per_run:
        console.print("[dim]--target compares feature runs: group by feature, tenant, user or day to see it[/dim]")
    if html is not None:
        write_cost_html(html, dims, rows, total, since)
        console.print(f"wrote {html}")


def _cell(dim: str, value: object, known: dict[str, set[str]]) -> str:
    if value is None:
        return "—"
    if dim in known and str(value) not in known[dim]:
        return f"{value} [yellow](not in keel.yaml)[/yellow]"
    return str(value)


def _per_run(found: dict[str, object] | None, target: float | None) -> str:
    if found is None:
        return "—"
    cost = float(found["per_run"] or 0)  # type: ignore[arg-type]
    shown = f"{fmt_cost(cost)} × {found['runs']}"
    if target is None:
        return shown
    return (
        f"[red]{shown} > {fmt_cost(target)}[/red]" if cost > target else f"[green]{shown} ≤ {fmt_cost(target)}[/green]"
    )


def write_cost_html(
    path: Path, dims: list[str], rows: list[dict[str, object]], total: float, since: str | None
) -> None:
    top = rows[:20]
    chart = bars(
        [(" · ".join(str(r[d]) for d in dims), (float(r["cost_usd"] or 0) / total) if total else 0.0) for r in top],  # type: ignore[arg-type]
        labels=[fmt_cost(float(r["cost_usd"] or 0)) for r in top],  # type: ignore[arg-type]
        fill="#3d5afe",
    )
    head = "".join(f"<th>{escape(d)}" for d in dims)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(r[d]))}" for d in dims)
        + f"<td>{r['calls']}<td>{fmt_cost(float(r['reported_usd'] or 0))}<td>{fmt_cost(float(r['estimated_usd'] or 0))}"  # type: ignore[arg-type]
        for r in rows
    )  # fmt: skip
    when = f"since {since}" if since else "all time"
    page = (
        f"<!doctype html><meta charset=utf-8><title>keel cost</title><style>{CSS}</style>"
        f"<h1>Cost by {escape(', '.join(dims))}</h1><p class=muted>{when} · total {fmt_cost(total)} · "
        f"made {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC</p>{chart}"
        f"<table><tr>{head}<th>calls<th>reported<th>estimated{body}</table>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
