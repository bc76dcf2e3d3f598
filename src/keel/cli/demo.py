"""``keel demo``: the main job on the embedded default, end to end over real HTTP.

Starts the gateway on loopback with API keys on, creates a key, streams a chat from the local
model through it, and prints the answer, its cost, its trace id and what the trace recorded.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import orjson
import typer

from keel.cli.common import console, fmt_cost, load_env
from keel.errors import KeelError, UserError
from keel.store.keys import create_key
from keel.store.traces import get_trace

QUESTION = "In two sentences: why should an application retry a request that failed with HTTP 503?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        question: str = typer.Option(QUESTION, help="what to ask the local model"),
        model: str | None = typer.Option(None, "--model", "-m", help="model alias (default: the local model)"),
        max_tokens: int = typer.Option(200, min=1, help="upper bound on the answer's length"),
        config: str | None = typer.Option(None, "--config", "-c", help="keel.yaml to use"),
    ) -> None:
        """Start the gateway, send a real chat through it, show answer, cost and trace."""
        import uvicorn

        from keel.server import build_app

        env = load_env(config)
        alias = model or env.settings.default_model or "local"
        app_ = build_app(env.settings, env.home, auth=True, host="127.0.0.1")
        route = app_.service.gateway.route(alias)
        with console.status(f"preparing {route.info.model} (first run assembles the model and checks its sha256)…"):
            for dep in route.settings.deployments:
                load = getattr(app_.service.gateway.adapters[dep], "load", None)
                if load is not None:
                    load()
        with env.db() as conn:
            key, _ = create_key(conn, "demo", "keel demo")
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app_.asgi, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started and thread.is_alive():
            time.sleep(0.02)
        if not server.started:
            raise UserError(f"the gateway could not start on 127.0.0.1:{port}")
        base = f"http://127.0.0.1:{port}/v1"
        console.rule(f"Keel gateway on {base} (API key auth, tracing on)")
        console.print(f"[bold]POST {base}/chat/completions[/bold]  model={alias}  stream=true")
        console.print(f"[bold cyan]Q:[/bold cyan] {question}")
        try:
            trace_id = _ask(base, key, alias, question, max_tokens)
        finally:
            server.should_exit = True
            thread.join(15)
        with env.db() as conn:
            rec = get_trace(conn, trace_id)
        if rec is None:
            raise UserError(f"trace {trace_id} was not recorded")
        console.rule("what Keel recorded")
        rate = rec.output_tokens / ((rec.latency_ms - (rec.ttft_ms or 0)) / 1000) if rec.latency_ms else 0
        console.print(f"trace id     {rec.id}")
        console.print(f"served by    {rec.alias} → {rec.deployment} ({rec.provider}: {rec.model})")
        console.print(f"tokens       {rec.input_tokens} in / {rec.output_tokens} out ({rec.usage_source}-reported)")
        console.print(
            f"latency      {rec.latency_ms:.0f} ms, first token {rec.ttft_ms or 0:.0f} ms, ~{rate:.0f} tokens/s"
        )
        console.print(f"cost         {fmt_cost(rec.cost_usd)} ({rec.cost_source})")
        console.print(
            f"\nNext: [bold]keel traces show {rec.id[:12]}[/bold] · [bold]keel cost[/bold] · [bold]keel serve[/bold]",
            highlight=False,
        )


def _ask(base: str, key: str, alias: str, question: str, max_tokens: int) -> str:
    """Stream the answer to the terminal; return the trace id."""
    body = {
        "model": alias,
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0.2,
        "messages": [{"role": "user", "content": question}],
    }
    headers = {"authorization": f"Bearer {key}", "x-keel-user": "demo-user", "x-keel-feature": "demo"}
    console.print("[bold green]A:[/bold green] ", end="")
    finish: str | None = None
    with httpx.stream("POST", f"{base}/chat/completions", json=body, headers=headers, timeout=300) as response:
        trace_id = str(response.headers.get("x-keel-trace-id", ""))
        if response.status_code != 200:
            error = orjson.loads(response.read()).get("error", {})
            raise KeelError(f"the gateway answered {response.status_code}: {error.get('message')}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = orjson.loads(line[6:])
            if "error" in event:
                raise KeelError(f"the stream failed: {event['error'].get('message')}")
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    console.print(text, end="", highlight=False, markup=False, soft_wrap=True)
                finish = choice.get("finish_reason") or finish
    console.print()
    if finish == "length":
        console.print(f"[yellow](stopped at max_tokens={max_tokens}; raise it with --max-tokens)[/yellow]")
    return trace_id
