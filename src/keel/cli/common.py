"""What every command needs: settings, the data directory, the store, a console."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from keel.config import keel_home, load_settings
from keel.config.settings import KeelSettings
from keel.errors import UserError
from keel.store.sqlite import connect, db_path

console = Console()
err_console = Console(stderr=True)


@dataclass
class Env:
    settings: KeelSettings
    home: Path

    def db(self) -> sqlite3.Connection:
        return connect(db_path(self.home))


def load_env(config: str | None) -> Env:
    settings = load_settings(config)
    return Env(settings, keel_home(settings))


_SPAN = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str | None) -> float | None:
    """'7d', '24h', '30m' or an ISO date → a UNIX timestamp."""
    if not value:
        return None
    match = _SPAN.match(value.strip())
    if match:
        return time.time() - int(match.group(1)) * _UNITS[match.group(2)]
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise UserError(f"--since takes a span like 7d, 24h, 30m or an ISO date, not '{value}'") from None


def fmt_cost(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


def fmt_ts(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
