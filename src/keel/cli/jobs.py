"""``keel worker`` runs job workers against the shared store without serving HTTP (on any host);
``keel jobs list|show|cancel`` reads and stops a tenant's jobs."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import orjson
import typer
from rich.table import Table

from keel.cli.common import TENANT, console, fmt_ts, load_env
from keel.store import open_store
from keel.store.jobs import STATES

CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")
app = typer.Typer(help="Durable jobs: list, show and cancel a tenant's jobs.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    @root.command()
    def worker(
        workers: int | None = typer.Option(None, min=1, max=256, help="jobs at a time (default: jobs.workers)"),
        config: str | None = CONFIG,
    ) -> None:
        """Run queued jobs from the store (Postgres to share them with `keel serve` replicas) until
        Ctrl-C or SIGTERM; a job in flight then returns to the queue when its lease runs out."""
        from keel.features.pipeline import open_pipeline
        from keel.server.work import Runtime

        env = load_env(config)
        settings = env.settings.jobs
        count = workers or settings.workers or 1
        chosen = settings.model_copy(update={"workers": count})

        async def main() -> None:
            async with open_pipeline(env.settings, env.home, env.settings.project_root) as pipeline:
                pool = Runtime(pipeline, env.settings).pool(count)
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                pool.start()
                console.print(
                    f"worker {pool.name}: {count} at a time, lease {chosen.lease_s:g} s, "
                    f"store {env.settings.store.backend}"
                )
                await stop.wait()
                await pool.aclose()
                console.print(f"stopped: {pool.ran} job(s) run, {pool.failed} failed attempt(s)")

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())


@app.command("list")
def list_(
    status: str | None = typer.Option(None, help=f"one of {', '.join(STATES)}"),
    feature: str | None = typer.Option(None),
    limit: int = typer.Option(20, min=1, max=200),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """A tenant's jobs, newest first."""
    env = load_env(config)
    with open_store(env.settings, env.home) as store:
        rows = store.jobs.find(tenant=tenant, status=status, feature=feature, limit=limit)
    table = Table("job", "feature", "status", "progress", "attempts", "cost", "created", title=f"jobs of {tenant}")
    for j in rows:
        progress = f"{j.done}/{j.total} {j.stage or ''}".strip() if j.total else (j.stage or "")
        cost = f"${j.cost_usd:.6f}" if j.cost_usd is not None else "—"
        table.add_row(j.id, j.feature or j.kind, j.status, progress, f"{j.attempts}/{j.max_attempts}", cost,
                      fmt_ts(j.created))  # fmt: skip
    console.print(table if rows else "no jobs yet: POST /v1/features/{name}/jobs queues one")


@app.command("show")
def show(job_id: str, tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """One job as JSON: status, progress, result or error, attempts, cost, trace id."""
    from keel.errors import JobNotFound
    from keel.jobs import job_json

    env = load_env(config)
    with open_store(env.settings, env.home) as store:
        job = store.jobs.get(job_id, tenant=tenant)
    if job is None:
        raise JobNotFound(f"no job '{job_id[:80]}' in tenant {tenant}")
    console.print_json(orjson.dumps(job_json(job)).decode())


@app.command("cancel")
def cancel(job_id: str, tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """Cancel a queued job, or ask a running one to stop at its next heartbeat."""
    env = load_env(config)
    with open_store(env.settings, env.home) as store:
        job = store.jobs.cancel(job_id, tenant=tenant)
    said = "cancelled" if job.status == "cancelled" else "asked to stop (it stops at its next heartbeat)"
    console.print(f"job {job.id}: {said}")
