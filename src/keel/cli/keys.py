"""``keel keys create|list|revoke`` and ``keel tenants list|delete``."""

from __future__ import annotations

import typer
from rich.table import Table

from keel.cli.common import console, fmt_ts, load_env
from keel.errors import UserError
from keel.store.keys import ROLES

app = typer.Typer(help="Manage API keys (stored only as hashes).", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants: who owns keys and data.", no_args_is_help=True)
CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")


@app.command("create")
def create(
    tenant: str = typer.Option(..., help="the tenant this key belongs to"),
    name: str | None = typer.Option(None, help="a label for the key"),
    role: str = typer.Option("member", help=f"one of {', '.join(ROLES)}"),
    config: str | None = CONFIG,
) -> None:
    """Create a key and print it once."""
    with load_env(config).store() as store:
        key, info = store.keys.create(tenant, name, role=role)
    console.print(f"[bold]{key}[/bold]", highlight=False)
    console.print(
        f"key {info.id} ({info.role}) for tenant '{info.tenant}'. Store it now: it is not shown again.", style="dim"
    )


@app.command("list")
def list_(
    tenant: str | None = typer.Option(None, help="only this tenant's keys"),
    config: str | None = CONFIG,
) -> None:
    """List keys (never their values)."""
    with load_env(config).store() as store:
        rows = store.keys.find(tenant)
    table = Table("id", "prefix", "tenant", "role", "name", "created", "status")
    for k in rows:
        status = f"[red]revoked {fmt_ts(k.revoked)}[/red]" if k.revoked else "[green]active[/green]"
        table.add_row(k.id, k.prefix + "…", k.tenant, k.role, k.name or "", fmt_ts(k.created), status)
    console.print(table if rows else "no keys yet: create one with `keel keys create --tenant NAME`")


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="the key's id or prefix (from `keel keys list`)"),
    config: str | None = CONFIG,
) -> None:
    """Revoke a key: requests with it get 401 from then on (on every host within a second)."""
    with load_env(config).store() as store:
        if not store.keys.revoke(key_id):
            raise UserError(f"no active key '{key_id}'; see `keel keys list`")
    console.print(f"revoked {key_id}")


@tenants_app.command("list")
def tenants_list(config: str | None = CONFIG) -> None:
    """Tenants with their live keys."""
    with load_env(config).store() as store:
        rows = store.keys.tenants()
    table = Table("tenant", "created", "live keys", "status")
    for t in rows:
        deleted = t["deleted"]
        status = (
            f"[red]deleted {fmt_ts(float(deleted))}[/red]" if isinstance(deleted, float) else "[green]active[/green]"
        )
        table.add_row(str(t["name"]), fmt_ts(float(str(t["created"]))), str(t["live_keys"]), status)
    console.print(table if rows else "no tenants yet: `keel keys create --tenant NAME` makes one")


@tenants_app.command("delete")
def tenants_delete(
    tenant: str = typer.Argument(..., help="the tenant to delete"),
    yes: bool = typer.Option(False, "--yes", help="do not ask"),
    config: str | None = CONFIG,
) -> None:
    """Delete a tenant: its keys stop working at once; it takes no new keys."""
    if not yes and not typer.confirm(f"delete tenant '{tenant}' and revoke its keys?"):
        raise typer.Exit(1)
    with load_env(config).store() as store:
        revoked = store.keys.delete_tenant(tenant)
    console.print(f"deleted tenant '{tenant}'; {revoked} key(s) revoked")
