"""``keel serve``: the OpenAI-compatible gateway."""

from __future__ import annotations

import typer

from keel.cli.common import console, load_env


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str | None = typer.Option(None, help="interface to bind (default from keel.yaml: 127.0.0.1)"),
        port: int | None = typer.Option(None, help="port (default from keel.yaml: 8080)"),
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
        no_auth: bool = typer.Option(False, "--no-auth", help="skip API keys (loopback only, for development)"),
        warm: bool = typer.Option(True, help="load local models at startup"),
    ) -> None:
        """Serve /v1/chat/completions, /v1/embeddings, /v1/models, /healthz and /metrics."""
        import uvicorn

        from keel.server import build_app

        env = load_env(config)
        host = host or env.settings.server.host
        port = env.settings.server.port if port is None else port
        app_ = build_app(env.settings, env.home, auth=False if no_auth else None, host=host, warm=warm)
        auth = "off (loopback dev mode)" if no_auth else "API keys"
        console.print(f"Keel gateway on http://{host}:{port}/v1 · auth: {auth} · data: {env.home}")
        console.print(f"models: {', '.join(app_.service.gateway.routes)}", style="dim")
        uvicorn.run(
            app_.asgi,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            loop="auto",
            http="auto",
            timeout_graceful_shutdown=10,
        )
