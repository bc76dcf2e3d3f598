"""``keel prompts sync|list|show|diff|label|rollback|history``."""

from __future__ import annotations

import difflib
from pathlib import Path

import typer
from rich.table import Table

from keel.cli.common import console, fmt_ts, load_env
from keel.features.prompts import DEFAULT_LABEL, PromptRegistry

app = typer.Typer(help="Prompts versioned from git: versions, labels, rollback.", no_args_is_help=True)
CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")
DIR = typer.Option(Path("prompts"), "--dir", help="the prompts folder")


def _registry(config: str | None, directory: Path) -> PromptRegistry:
    env = load_env(config)
    return PromptRegistry(env.db(), directory)


@app.command("sync")
def sync(directory: Path = DIR, config: str | None = CONFIG) -> None:
    """Record every prompt file's current content as a version (new content → new version)."""
    for name, version in _registry(config, directory).sync().items():
        console.print(f"{name}: v{version}")


@app.command("list")
def list_(directory: Path = DIR, config: str | None = CONFIG) -> None:
    """Prompts with their newest version and labels."""
    registry = _registry(config, directory)
    names = sorted(registry.sync())
    table = Table("prompt", "versions", "labels", "description")
    for name in names:
        versions = registry.versions(name)
        labels = ", ".join(f"{label}→v{v.version}" for v in versions for label in v.labels)
        table.add_row(name, str(len(versions)), labels, registry.source(name, versions[-1].version).meta.description)
    console.print(table if names else f"no prompts in {directory}")


@app.command("show")
def show(
    name: str,
    version: int | None = typer.Option(None, "--version", "-v"),
    label: str = typer.Option(DEFAULT_LABEL, help="used when no --version is given"),
    directory: Path = DIR,
    config: str | None = CONFIG,
) -> None:
    """Print one version's source."""
    registry = _registry(config, directory)
    number = version or registry.label_version(name, label)
    console.print(f"[bold]{name} v{number}[/bold]")
    console.print(registry.source(name, number).text, highlight=False, markup=False)


@app.command("diff")
def diff(name: str, old: int, new: int, directory: Path = DIR, config: str | None = CONFIG) -> None:
    """Unified diff between two versions."""
    registry = _registry(config, directory)
    a, b = registry.source(name, old).text, registry.source(name, new).text
    lines = difflib.unified_diff(a.splitlines(), b.splitlines(), f"{name}@v{old}", f"{name}@v{new}", lineterm="")
    for line in lines:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        console.print(line, style=style, highlight=False, markup=False)


@app.command("label")
def label(name: str, label: str, version: int, directory: Path = DIR, config: str | None = CONFIG) -> None:
    """Point a label (production, staging, …) at a version."""
    _registry(config, directory).set_label(name, label, version)
    console.print(f"{name}: {label} → v{version}")


@app.command("rollback")
def rollback(
    name: str, label: str = typer.Option(DEFAULT_LABEL), directory: Path = DIR, config: str | None = CONFIG
) -> None:
    """Move a label back to where it was before its last move."""
    old, new = _registry(config, directory).rollback(name, label)
    console.print(f"{name}: {label} v{old} → v{new}")


@app.command("history")
def history(name: str, directory: Path = DIR, config: str | None = CONFIG) -> None:
    """Every version and every label move."""
    registry = _registry(config, directory)
    versions = Table("version", "hash", "commit", "author", "recorded", "labels", title=f"{name}: versions")
    for v in registry.versions(name):
        versions.add_row(
            f"v{v.version}",
            v.hash[:12],
            (v.git_commit or "—")[:10],
            v.git_author or "—",
            fmt_ts(v.created),
            ", ".join(v.labels),
        )
    console.print(versions)
    moves = Table("when", "label", "from", "to", "why", title="label moves")
    for m in registry.history(name):
        moves.add_row(fmt_ts(m["at"]), m["label"], f"v{m['from']}" if m["from"] else "—", f"v{m['to']}", m["reason"])
    console.print(moves)
