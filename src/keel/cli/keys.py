"""``keel keys create|list|revoke``."""

from __future__ import annotations

import typer
from rich.table import Table

from keel.cli.common import console, fmt_ts, load_env
from keel.errors import UserError
from keel.store.keys import create_key, list_keys, revoke_key

app = typer.Typer(help="Manage API keys (stored only as hashes).", no_args_is_help=True)
CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")


@app.command("create")
def create(
    tenant: str = typer.Option(..., help="the tenant this key belongs to"),
    name: str | None = typer.Option(None, help="a label for the key"),
    config: str | None = CONFIG,
) -> None:
    """Create a key and print it once."""
    with load_env(config).db() as conn:
        key, info = create_key(conn, tenant, name)
    console.print(f"[bold]{key}[/bold]", highlight=False)
    console.print(f"key {info.id} for tenant '{info.tenant}'. Store it now: it is not shown again.", style="dim")


@app.command("list")
def list_(config: str | None = CONFIG) -> None:
    """List keys (never their values)."""
    with load_env(config).db() as conn:
        rows = list_keys(conn)
    table = Table("id", "prefix", "tenant", "name", "created", "status")
    for k in rows:
        status = f"[red]revoked {fmt_ts(k.revoked)}[/red]" if k.revoked else "[green]active[/green]"
        table.add_row(k.id, k.prefix + "…", k.tenant, k.name or "", fmt_ts(k.created), status)
    console.print(table if rows else "no keys yet: create one with `keel keys create --tenant NAME`")


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="the key's id or prefix (from `keel keys list`)"),
    config: str | None = CONFIG,
) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    with load_env(config).db() as conn:
        if not revoke_key(conn, key_id):
            raise UserError(f"no active key '{key_id}'; see `keel keys list`")
    console.print(f"revoked {key_id}")
