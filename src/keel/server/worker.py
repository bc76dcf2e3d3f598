"""What each ``keel serve --workers N`` process runs: uvicorn imports ``create`` in every worker,
and each builds its own app from the same configuration, handed over in the environment
(``KEEL_CONFIG``, and the serve options below). The workers share one port and one store.

State that stays in a worker's memory, and its bound:
- API key lookups: cached ≤ ``server.auth_cache_s`` (1 s); a revocation reaches every worker within it.
- feature specs and prompt files: re-read when the file changes on disk; label moves are read from
  the store on every run.
- answer-cache neighbour matrices: reloaded when the scope's stored count or newest entry moves.
- circuit breakers: per worker (each opens on the failures it sees).
- rate limits: per worker with the embedded ledger — so ``--workers > 1`` with ``limits:`` needs
  ``ledger: {backend: redis}``, and ``keel serve`` refuses otherwise. Budgets are shared either way
  (the store's transactions, or Redis).
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp

from keel.config import keel_home, load_settings
from keel.config.settings import KeelSettings
from keel.errors import ConfigError

AUTH = "KEEL_SERVE_AUTH"  # "0": --no-auth
HOST = "KEEL_SERVE_HOST"
WARM = "KEEL_SERVE_WARM"


def check_workers(settings: KeelSettings, workers: int) -> None:
    """Refuse a configuration whose limits would silently multiply across worker processes."""
    if workers > 1 and settings.limits and settings.ledger.backend != "redis":
        raise ConfigError(
            f"--workers {workers} with rate limits (limits: {', '.join(sorted(settings.limits))}) needs a shared "
            "counter: each worker would admit the full limit on its own. Set ledger: {backend: redis, "
            'redis_url: {"$env": "KEEL_REDIS_URL"}} in keel.yaml, or serve with --workers 1'
        )


def create() -> ASGIApp:
    from keel.server.factory import build_app

    settings = load_settings(None)  # KEEL_CONFIG names the file, as the parent process resolved it
    app = build_app(
        settings,
        keel_home(settings),
        auth=os.environ.get(AUTH, "1") != "0",
        host=os.environ.get(HOST) or settings.server.host,
        warm=os.environ.get(WARM, "1") == "1",
    )
    return app.asgi
