"""``keel policy show``: the data-flow map — which kinds of personal data may reach which deployment."""

from __future__ import annotations

import typer
from rich.table import Table

from keel.cli.common import console, load_env
from keel.config.settings import PII_KINDS
from keel.guards.policy import allowed_for

app = typer.Typer(help="The data policy: what personal data may leave the machine, to whom.", no_args_is_help=True)


@app.command("show")
def show(config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use")) -> None:
    """Every deployment, the kinds of personal data it may receive, and what happens to the rest."""
    settings = load_env(config).settings
    policy = settings.data_policy
    table = Table("deployment", "provider", "where", *PII_KINDS, title="data-flow map (✓ may be sent · ✗ withheld)")
    for name, d in sorted(settings.deployments.items()):
        local = d.provider in ("local", "onnx-embed")
        allowed = allowed_for(policy, name, d.provider, local)
        where = "this machine" if local else (d.base_url or "the provider's API")
        table.add_row(
            name, d.provider, where, *("[green]✓[/green]" if k in allowed else "[red]✗[/red]" for k in PII_KINDS)
        )
    console.print(table)
    if not policy.enabled:
        console.print(
            "[yellow]the data policy is switched off (data_policy.enabled: false): everything may be sent[/yellow]"
        )
        return
    action = {"redact": "replaced by placeholders (restored in the answer)", "block": "refused with 403 data_policy",
              "reroute": f"rerouted to {policy.reroute_to}"}[policy.on_violation]  # fmt: skip
    console.print(f"withheld kinds are {action}; a call is held to the strictest deployment its alias could reach")
