"""``keel worker`` runs job workers against the shared store without serving HTTP (on any host);
``keel jobs list|show|tail|cancel|retry`` reads, follows, stops and re-queues a tenant's jobs; ``keel
webhooks list|redeliver|secret`` shows and re-sends their webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from keel.cli.common import TENANT, console, fmt_ts, load_env
from keel.store import Store, open_store
from keel.store.jobs import STATES, Job

CONFIG = typer.Option(None, "--config", "-c", help="keel.yaml to use")
app = typer.Typer(help="Durable jobs: list, show, follow, cancel and retry a tenant's jobs.", no_args_is_help=True)


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


@app.command("retry")
def retry(job_id: str, tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """Queue a failed, cancelled or expired job again, with a fresh set of attempts."""
    env = load_env(config)
    with open_store(env.settings, env.home) as store:
        job = store.jobs.retry(job_id, tenant=tenant)
    console.print(f"job {job.id}: queued again (follow it with keel jobs tail {job.id})")


@app.command("tail")
def tail_cmd(
    job_id: str,
    tenant: str = TENANT,
    timeout: float | None = typer.Option(None, help="give up after this many seconds"),
    config: str | None = CONFIG,
) -> None:
    """Follow a job's progress with a bar until it ends; exit 0 when it succeeds, 1 otherwise."""
    env = load_env(config)
    with open_store(env.settings, env.home) as store:
        job = tail(store, job_id, tenant, timeout)
    raise typer.Exit(0 if job.status == "succeeded" else 1)


def tail(store: Store, job_id: str, tenant: str, timeout: float | None = None) -> Job:
    """Draw a job's progress until it ends (or ``timeout``), then say how it ended."""
    from keel.errors import JobNotFound

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stage]}"),
    )
    deadline = time.monotonic() + timeout if timeout is not None else None
    job = store.jobs.get(job_id, tenant=tenant)
    if job is None:
        raise JobNotFound(f"no job '{job_id[:80]}' in tenant {tenant}")
    with Progress(*columns, console=console, transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"{job.id} {job.status}", total=None, stage="")
        while not job.finished_state and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.25)
            job = store.jobs.get(job_id, tenant=tenant) or job
            bar.update(
                task,
                description=f"{job.id} {job.status}",
                total=job.total,
                completed=job.done or 0,
                stage=job.stage or "",
            )
    cost = f"${job.cost_usd:.6f}" if job.cost_usd is not None else "—"
    if job.status == "succeeded":
        console.print(
            f"[green]job {job.id} succeeded[/green] after {job.attempts} attempt(s), cost {cost}", highlight=False
        )
    elif job.finished_state:
        console.print(f"[red]job {job.id} {job.status}[/red]: {job.error}", highlight=False)
    else:
        console.print(
            f"job {job.id} is still {job.status} ({job.done or 0}/{job.total or '?'} {job.stage or ''})",
            highlight=False,
        )
    return job


def submit(store: Store, kind: str, payload: dict[str, object], tenant: str, *, feature: str | None = None) -> Job:
    """Queue a job from the CLI and say how to follow it."""
    job, _ = store.jobs.enqueue(tenant, kind, payload, feature=feature)
    console.print(
        f"queued job {job.id} (trace {job.trace_id}); keel serve or keel worker runs it — "
        f"follow it with keel jobs tail {job.id}",
        highlight=False,
    )
    return job


hooks = typer.Typer(
    help="Webhooks: deliveries, re-sending one, and an endpoint's signing secret.", no_args_is_help=True
)


@hooks.command("list")
def hooks_list(
    job: str | None = typer.Option(None, help="only this job's (or batch job's) deliveries"),
    status: str | None = typer.Option(None, help="pending, delivered or failed"),
    limit: int = typer.Option(20, min=1, max=500),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """A tenant's webhook deliveries, newest first: event, URL, state, attempts and the last answer."""
    env = load_env(config)
    with open_store(env.settings, env.home) as store:
        rows = store.webhooks.find(tenant=tenant, subject=job, status=status, limit=limit)
    table = Table(
        "delivery", "event", "url", "status", "attempts", "last answer", "created", title=f"webhooks of {tenant}"
    )
    for d in rows:
        colour = {"delivered": "green", "failed": "red"}.get(d.status, "yellow")
        last = str(d.last_status) if d.last_status is not None else (d.last_error or "—")
        table.add_row(
            d.id, d.event, d.url[:50], f"[{colour}]{d.status}[/{colour}]", str(d.attempts), last[:40], fmt_ts(d.created)
        )
    console.print(table if rows else "no webhook deliveries yet: give a job a webhook URL")


@hooks.command("redeliver")
def hooks_redeliver(delivery: str, tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """Send a delivery again now (a failed one too), with a fresh 24 h of retries."""
    from keel.errors import WebhookNotFound

    env = load_env(config)
    with open_store(env.settings, env.home) as store:
        d = store.webhooks.redeliver(delivery, tenant=tenant, give_up_s=env.settings.webhooks.give_up_h * 3600)
    if d is None:
        raise WebhookNotFound(f"no webhook delivery '{delivery[:80]}' in tenant {tenant}")
    console.print(f"delivery {d.id} ({d.event} → {d.url}) is due now; a running worker sends it within a second")


@hooks.command("secret")
def hooks_secret(url: str, tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """The signing secret of an endpoint (made now if the tenant has none for it): verify each
    delivery's webhook-signature with it, e.g. standardwebhooks.Webhook(secret).verify(body, headers)."""
    from keel.jobs.webhooks import check_url

    env = load_env(config)
    check_url(url, env.settings.webhooks, param="URL")
    with open_store(env.settings, env.home) as store:
        print(store.webhooks.secret(tenant, url))
