"""``keel cost``: spend by model, tenant, user, feature or day."""

from __future__ import annotations

import typer
from rich.table import Table

from keel.cli.common import console, fmt_cost, load_env, parse_since
from keel.store.traces import cost_summary


def register(app: typer.Typer) -> None:
    @app.command()
    def cost(
        by: str = typer.Option("model", help="comma-separated: model, deployment, tenant, user, feature, day"),
        since: str | None = typer.Option(None, help="e.g. 7d, 24h or 2026-11-01"),
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
    ) -> None:
        """What calls cost, from provider-reported usage and the price table."""
        dims = [d.strip() for d in by.split(",") if d.strip()]
        with load_env(config).db() as conn:
            rows = cost_summary(conn, dims, since=parse_since(since))
        if not rows:
            console.print("no calls recorded in that window")
            return
        table = Table(
            *dims,
            "calls",
            "errors",
            "input tok",
            "output tok",
            "cached tok",
            "cost",
            "avg latency",
            title="cost (provider-reported usage × price table; local models cost 0)",
        )
        total = 0.0
        for r in rows:
            total += r["cost_usd"] or 0
            unpriced = f" [yellow]({r['unpriced']} unpriced)[/yellow]" if r["unpriced"] else ""
            table.add_row(
                *[str(r[d] if r[d] is not None else "—") for d in dims],
                str(r["calls"]),
                str(r["errors"]),
                f"{r['input_tokens']:,}",
                f"{r['output_tokens']:,}",
                f"{r['cached_tokens']:,}",
                fmt_cost(r["cost_usd"]) + unpriced,
                f"{r['avg_latency_ms'] or 0:.0f} ms",
            )
        table.add_section()
        table.add_row(
            "total", *[""] * (len(dims) - 1), str(sum(r["calls"] for r in rows)), "", "", "", "", fmt_cost(total), ""
        )
        console.print(table)
