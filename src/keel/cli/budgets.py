"""``keel budgets``: every budget's buckets — who, which window, spent and held against the limit."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from keel.cli.common import Env, console, load_env
from keel.cost.budgets import NANO
from keel.cost.prices import PriceTable
from keel.gateway.admission import build_admission
from keel.gateway.router import Gateway
from keel.text import usd

CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")


def register(app: typer.Typer) -> None:
    @app.command("budgets")
    def budgets(config: str | None = CONFIG) -> None:
        """Spend and holds per budget bucket, from the configured ledger (SQLite or Redis)."""
        env = load_env(config)
        if not env.settings.budgets:
            console.print("no budgets in keel.yaml (see the README's 'Budgets and rate limits')")
            return
        rows = asyncio.run(_rows(env))
        table = Table("budget", "who", "window", "spent", "held now", "limit", "used", "mode",
                      title=f"budgets ({env.settings.ledger.backend} ledger)")  # fmt: skip
        for name, who, window, spent_n, spent_t, held_n, held_t in rows:
            b = env.settings.budgets[name]
            limit = " + ".join(
                x for x in (f"${b.usd:g}" if b.usd else "", f"{b.tokens:,} tok" if b.tokens else "") if x
            )
            shares = [spent_n / NANO / b.usd if b.usd else 0.0, spent_t / b.tokens if b.tokens else 0.0]
            share = max(shares)
            colour = "red" if share >= 1 else "yellow" if share >= 0.8 else "green"
            spent = usd(spent_n / NANO) + (f" · {spent_t:,} tok" if b.tokens else "")
            held = usd(held_n / NANO) + (f" · {held_t:,} tok" if b.tokens else "")
            bar = f"[{colour}]{'█' * min(20, round(share * 20)):<20}[/{colour}] {share:.0%}"
            table.add_row(name, who or "everyone", window, spent, held, limit, bar, b.mode)
        console.print(table if rows else "no spend recorded against any budget yet")


async def _rows(env: Env) -> list[tuple[str, str, str, int, int, int, int]]:
    settings, home = env.settings, env.home
    gateway = Gateway(settings, home)
    admission = build_admission(settings, home, gateway, PriceTable.load(settings.prices))
    out = []
    try:
        ledger = admission.ledger
        assert ledger is not None
        for name in settings.budgets:
            for bucket in await ledger.buckets(name):
                _, who, window = bucket.split("|", 2)
                spent_n, spent_t, held_n, held_t = await ledger.usage(bucket)
                out.append((name, who, window, spent_n, spent_t, held_n, held_t))
    finally:
        await admission.aclose()
        await gateway.aclose()
    return out
