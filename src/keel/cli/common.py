"""What every command needs: settings, the data directory, the store, a console."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from keel.config import keel_home, load_settings
from keel.config.settings import KeelSettings
from keel.store import DEFAULT_TENANT, Store, open_store
from keel.timespan import parse_since

console = Console()
err_console = Console(stderr=True)
TENANT = typer.Option(
    DEFAULT_TENANT, "--tenant", envvar="KEEL_TENANT", help="the tenant whose data this command acts on"
)


__all__ = ["DEFAULT_TENANT", "TENANT", "Env", "console", "err_console", "fmt_cost", "fmt_ts", "load_env", "parse_since"]


@dataclass
class Env:
    settings: KeelSettings
    home: Path

    def store(self) -> Store:
        """The configured store (SQLite under KEEL_HOME, or Postgres); close it when done."""
        return open_store(self.settings, self.home)


def load_env(config: str | None) -> Env:
    settings = load_settings(config)
    return Env(settings, keel_home(settings))


def fmt_cost(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


def fmt_ts(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
