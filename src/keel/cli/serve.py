"""``keel serve``: the OpenAI-compatible gateway."""

from __future__ import annotations

from typing import Any

import typer

from keel.cli.common import Env, console, load_env
from keel.config.settings import KeelSettings
from keel.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command()
    def ui(
        host: str | None = typer.Option(None, help="where keel serve listens (default from keel.yaml)"),
        port: int | None = typer.Option(None, help="its port (default from keel.yaml: 8080)"),
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
        open_browser: bool = typer.Option(True, "--open/--no-open", help="open it in the default browser"),
    ) -> None:
        """Open the dashboard of a running `keel serve` (sign in there with an API key)."""
        import webbrowser

        import httpx

        env = load_env(config)
        shown = host or env.settings.server.host
        shown = "127.0.0.1" if shown in ("0.0.0.0", "::") else shown
        url = f"http://{shown}:{env.settings.server.port if port is None else port}/ui"
        try:
            httpx.get(url.removesuffix("/ui") + "/healthz", timeout=2)
        except httpx.HTTPError:
            raise UserError(f"nothing answers at {url}: start the server first with `keel serve`") from None
        console.print(f"the dashboard: {url}  (sign in with a key from `keel keys create`)")
        if open_browser:
            webbrowser.open(url)

    @app.command()
    def serve(
        host: str | None = typer.Option(None, help="interface to bind (default from keel.yaml: 127.0.0.1)"),
        port: int | None = typer.Option(None, help="port (default from keel.yaml: 8080)"),
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
        no_auth: bool = typer.Option(False, "--no-auth", help="skip API keys (loopback only, for development)"),
        warm: bool = typer.Option(True, help="load local models at startup"),
        workers: int = typer.Option(1, min=1, max=64, help="processes sharing the port (and the store)"),
    ) -> None:
        """Serve /v1/chat/completions, /v1/embeddings, /v1/models, /v1/traces, /healthz, /metrics and the
        dashboard at /ui."""
        import uvicorn

        from keel.server import build_app

        env = load_env(config)
        host = host or env.settings.server.host
        port = env.settings.server.port if port is None else port
        auth = "off (loopback dev mode)" if no_auth else "API keys"
        store = env.settings.store.backend
        if workers > 1:
            _serve_workers(env, config, host, port, workers, no_auth, warm)
            return
        app_ = build_app(env.settings, env.home, auth=False if no_auth else None, host=host, warm=warm)
        console.print(f"Keel gateway on http://{host}:{port}/v1 · auth: {auth} · store: {store} · data: {env.home}")
        console.print(f"models: {', '.join(app_.service.gateway.routes)}", style="dim")
        uvicorn.run(
            app_.asgi,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            loop="auto",
            timeout_graceful_shutdown=10,
            **edge_limits(env.settings),
        )


def edge_limits(settings: KeelSettings) -> dict[str, Any]:
    """uvicorn's share of the edge limits: the protocol with a header deadline and eviction of idle
    connections past the cap (``keel.server.protocol``), requests in flight past the cap (503), and
    the keep-alive idle timeout. The body read timeout is the app's (408)."""
    from keel.server.protocol import configure

    server = settings.server
    return {
        "http": configure(server.header_timeout_s, server.max_connections),
        "limit_concurrency": server.max_connections + 1,  # the protocol keeps open connections to the cap
        "timeout_keep_alive": server.keep_alive_s,
    }


def _serve_workers(env: Env, config: str | None, host: str, port: int, workers: int, no_auth: bool, warm: bool) -> None:
    """Several processes behind one port: each builds its app from the same configuration."""
    import os

    import uvicorn

    from keel.config import find_config
    from keel.server import worker
    from keel.server.auth import LOOPBACK

    worker.check_workers(env.settings, workers)
    if no_auth and host not in LOOPBACK:
        raise UserError(f"--no-auth is allowed only on loopback, not on {host}; create a key with `keel keys create`")
    from keel.store import open_store

    open_store(env.settings, env.home).close()  # migrate once, and fail here (not in N workers) if it is down
    found = find_config(config)
    if found is not None:
        os.environ["KEEL_CONFIG"] = str(found.resolve())
    os.environ["KEEL_HOME"] = str(env.home)
    os.environ[worker.AUTH] = "0" if no_auth else "1"
    os.environ[worker.HOST] = host
    os.environ[worker.WARM] = "1" if warm else "0"
    local = [n for n, d in env.settings.deployments.items() if d.provider == "local"]
    console.print(
        f"Keel gateway on http://{host}:{port}/v1 · {workers} workers · store: {env.settings.store.backend} · "
        f"data: {env.home}"
    )
    if local and warm:
        console.print(f"each worker loads its own copy of the local model(s) {', '.join(local)}", style="yellow")
    uvicorn.run(
        "keel.server.worker:create",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        **edge_limits(env.settings),
    )
