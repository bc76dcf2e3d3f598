"""``keel prompts sync|list|show|diff|label|rollback|history``."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from keel.cli.common import console, fmt_ts, load_env
from keel.features.prompts import DEFAULT_LABEL, PromptRegistry

app = typer.Typer(help="Prompts versioned from git: versions, labels, rollback.", no_args_is_help=True)
CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")
DIR = typer.Option(Path("prompts"), "--dir", help="the prompts folder")


@contextmanager
def _registry(config: str | None, directory: Path) -> Iterator[PromptRegistry]:
    with load_env(config).store() as store:
        yield PromptRegistry(store.prompts, directory)


@app.command("sync")
def sync(directory: Path = DIR, config: str | None = CONFIG) -> None:
    """Record every prompt file's current content as a version (new content → new version)."""
    with _registry(config, directory) as registry:
        synced = registry.sync()
    for name, version in synced.items():
        console.print(f"{name}: v{version}")


@app.command("list")
def list_(directory: Path = DIR, config: str | None = CONFIG) -> None:
    """Prompts with their newest version and labels."""
    table = Table("prompt", "versions", "labels", "description")
    with _registry(config, directory) as registry:
        names = sorted(registry.sync())
        for name in names:
            versions = registry.versions(name)
            labels = ", ".join(f"{label}→v{v.version}" for v in versions for label in v.labels)
            description = registry.source(name, versions[-1].version).meta.description
            table.add_row(name, str(len(versions)), labels, description)
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
    with _registry(config, directory) as registry:
        number = version or registry.label_version(name, label)
        text = registry.source(name, number).text
    console.print(f"[bold]{name} v{number}[/bold]")
    console.print(text, highlight=False, markup=False)


@app.command("diff")
def diff(name: str, old: int, new: int, directory: Path = DIR, config: str | None = CONFIG) -> None:
    """Unified diff between two versions."""
    with _registry(config, directory) as registry:
        a, b = registry.source(name, old).text, registry.source(name, new).text
    lines = difflib.unified_diff(a.splitlines(), b.splitlines(), f"{name}@v{old}", f"{name}@v{new}", lineterm="")
    for line in lines:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        console.print(line, style=style, highlight=False, markup=False)


@app.command("label")
def label(name: str, label: str, version: int, directory: Path = DIR, config: str | None = CONFIG) -> None:
    """Point a label (production, staging, …) at a version."""
    with _registry(config, directory) as registry:
        registry.set_label(name, label, version)
    console.print(f"{name}: {label} → v{version}")


@app.command("rollback")
def rollback(
    name: str, label: str = typer.Option(DEFAULT_LABEL), directory: Path = DIR, config: str | None = CONFIG
) -> None:
    """Move a label back to where it was before its last move."""
    with _registry(config, directory) as registry:
        old, new = registry.rollback(name, label)
    console.print(f"{name}: {label} v{old} → v{new}")


@app.command("history")
def history(name: str, directory: Path = DIR, config: str | None = CONFIG) -> None:
    """Every version and every label move."""
    with _registry(config, directory) as registry:
        found, moved = registry.versions(name), registry.history(name)
    versions = Table("version", "hash", "commit", "author", "recorded", "labels", title=f"{name}: versions")
    for v in found:
        versions.add_row(
            f"v{v.version}",
            v.hash[:12],
            (v.git_commit or "—")[:10],
            v.git_author or "—",
            fmt_ts(v.created),
            ", ".join(v.labels),
        )
    console.print(versions)
    moves = Table("when", "label", "from", "to", "who", "why", title="label moves")
    for m in moved:
        was = f"v{m['from']}" if m["from"] else "—"
        moves.add_row(fmt_ts(m["at"]), m["label"], was, f"v{m['to']}", m["who"], m["reason"])
    console.print(moves)
