"""Build the ASGI app from settings (used by ``keel serve`` and by tests)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from keel.config.settings import KeelSettings
from keel.errors import UserError
from keel.gateway.retry import Sleep
from keel.gateway.runtime import build_service, close_service
from keel.providers.base import ProviderFactory
from keel.rag.backends import Collections
from keel.server.app import KeelApp
from keel.server.auth import LOOPBACK
from keel.server.ui import UI
from keel.server.ui.session import Sessions, load_secret
from keel.store import open_store
from keel.tracing.tracer import Tracer

log = logging.getLogger("keel.server")


def build_app(
    settings: KeelSettings,
    home: Path,
    *,
    auth: bool | None = None,
    host: str | None = None,
    warm: bool = False,
    factories: dict[str, ProviderFactory] | None = None,
    sleep: Sleep = asyncio.sleep,
    tracer: Tracer | None = None,
) -> KeelApp:
    auth = settings.server.auth if auth is None else auth
    host = host or settings.server.host
    if not auth and host not in LOOPBACK:
        raise UserError(f"--no-auth is allowed only on loopback, not on {host}; create a key with `keel keys create`")
    store = open_store(settings, home)  # a Postgres that is down stops here, before anything starts
    service = build_service(settings, home, factories=factories, sleep=sleep, tracer=tracer)
    collections = Collections(settings, home)
    secret = settings.server.session_secret.resolve() if settings.server.session_secret is not None else None
    ledger = service.admission.ledger if service.admission is not None else None
    ui = UI(store, Sessions(load_secret(home, secret)), settings=settings, ledger=ledger) if auth else None

    default = settings.models.get(settings.default_model or "")
    first = set(default.deployments if default is not None else ())

    async def startup() -> None:
        if warm:  # the default model's deployments and every non-local one; other local models load when first asked
            for name, adapter in service.gateway.adapters.items():
                load = getattr(adapter, "load", None)
                if load is not None and (name in first or settings.deployments[name].provider != "local"):
                    asyncio.get_running_loop().run_in_executor(None, _warm, adapter.info.deployment, load)

    async def shutdown() -> None:
        await close_service(service)
        collections.close()
        store.close()

    return KeelApp(
        service,
        store=store,
        auth=auth,
        max_body_bytes=settings.server.max_body_bytes,
        auth_cache_s=settings.server.auth_cache_s,
        body_timeout_s=settings.server.body_timeout_s,
        collections=collections,
        project_root=settings.project_root,
        on_startup=startup,
        on_shutdown=shutdown,
        ui=ui,
    )


def _warm(name: str, load: object) -> None:
    try:
        load()  # type: ignore[operator]
        log.info("loaded %s", name)
    except Exception as exc:  # a broken model must not stop the server; calls will report it
        log.error("could not load %s: %s", name, exc)
