"""``keel migrate``, ``keel store copy``: the schema, and moving an embedded install into Postgres."""

from __future__ import annotations

import os

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from keel.cli.common import console, load_env
from keel.errors import UserError

app = typer.Typer(help="The store: SQLite under KEEL_HOME, or Postgres.", no_args_is_help=True)
CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")


def register(root: typer.Typer) -> None:
    @root.command("migrate")
    def migrate_cmd(config: str | None = CONFIG) -> None:
        """Apply the store's pending migrations (each under a lock: safe while replicas start)."""
        from keel.store import open_database
        from keel.store.migrations import schema_version

        env = load_env(config)
        db = open_database(env.settings, env.home)
        try:  # db.where is the path, or the URL with its password already replaced
            console.print(f"{env.settings.store.backend} store at {db.where}: schema v{schema_version(db)}")
        finally:
            db.close()


@app.command("copy")
def copy_cmd(
    to: str | None = typer.Option(None, "--to", help="a postgresql:// URL (prefer --to-env: shells keep history)"),
    to_env: str | None = typer.Option(None, "--to-env", help="the variable holding the target URL"),
    config: str | None = CONFIG,
) -> None:
    """Copy this install's embedded store (SQLite under KEEL_HOME) into an empty Postgres database;
    every row is counted on both sides. Then set store: {backend: postgres} in keel.yaml."""
    from keel.store import db_path, redact_url
    from keel.store.copy import copy_store
    from keel.store.engines import open_postgres, open_sqlite

    if (to is None) == (to_env is None):
        raise UserError("give the target as --to URL or --to-env VARIABLE")
    url = to if to is not None else os.environ.get(to_env or "")
    if not url:
        raise UserError(f"the variable {to_env} is not set")
    if not url.startswith(("postgres://", "postgresql://")):
        raise UserError(f"the target must be a postgresql:// URL, not {redact_url(url)[:40]}")
    env = load_env(config)
    source = open_sqlite(db_path(env.home))
    target = open_postgres(url)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            tasks: dict[str, object] = {}

            def progress(table: str, done: int, total: int) -> None:
                if table not in tasks:
                    tasks[table] = bar.add_task(table, total=total)
                bar.update(tasks[table], completed=done)  # type: ignore[arg-type]

            copied = copy_store(source, target, progress=progress)
    finally:
        source.close()
        target.close()
    table = Table("table", "rows", "copied", title=f"{db_path(env.home)} → {redact_url(url)}")
    for c in copied:
        table.add_row(c.table, f"{c.source:,}", f"[green]{c.target:,}[/green]")
    console.print(table)
    console.print(
        'every row is there. Now set store: {backend: postgres, url: {"$env": "KEEL_PG_URL"}} in keel.yaml; '
        "collections are not copied — re-run `keel ingest` with the postgres store (embeddings are recomputed)"
    )
