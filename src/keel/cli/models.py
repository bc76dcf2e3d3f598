"""``keel models``: aliases, their fallback chains and deployment profiles."""

from __future__ import annotations

import typer
from rich.table import Table

from keel.cli.common import console, load_env


def register(app: typer.Typer) -> None:
    @app.command()
    def models(config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use")) -> None:
        """List the model names clients can ask for."""
        env = load_env(config)
        table = Table("model", "serves from (in fallback order)", "provider", "context", "retry", "description")
        for alias, cfg in env.settings.models.items():
            deps = [env.settings.deployments[d] for d in cfg.deployments]
            local = [env.settings.local_models.get(d.model) for d in deps if d.provider == "local"]
            window = deps[0].context_window or (local[0].context_window if local and local[0] else None)
            table.add_row(
                alias + (" [dim](default)[/dim]" if alias == env.settings.default_model else ""),
                " → ".join(f"{d} ({env.settings.deployments[d].model})" for d in cfg.deployments),
                ", ".join(sorted({d.provider for d in deps})),
                f"{window:,}" if window else "—",
                f"{cfg.retry.attempts}× ≤{cfg.retry.deadline_s:g}s",
                cfg.description,
            )
        console.print(table)
