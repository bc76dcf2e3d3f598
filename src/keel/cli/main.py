"""The ``keel`` command. Errors are one line that says what to do, never a stack trace."""

from __future__ import annotations

import os
import sys

import typer

from keel.cli import (
    budgets,
    chat,
    cost,
    demo,
    evals,
    experiments,
    guard,
    jobs,
    keys,
    models,
    monitor,
    policy,
    prompts,
    rag,
    review,
    run,
    serve,
    store,
    traces,
)
from keel.cli.common import err_console
from keel.errors import KeelError

app = typer.Typer(
    name="keel",
    help="Keel: the production layer for LLM features (gateway, traces, cost).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
serve.register(app)
chat.register(app)
models.register(app)
cost.register(app)
budgets.register(app)
demo.register(app)
rag.register(app)
rag.register_ask(app)
run.register(app)
evals.register(app)
jobs.register(app)
app.add_typer(jobs.app, name="jobs")
app.add_typer(jobs.hooks, name="webhooks")
app.add_typer(review.app, name="review")
app.add_typer(monitor.app, name="monitor")
app.add_typer(keys.app, name="keys")
app.add_typer(keys.tenants_app, name="tenants")
app.add_typer(store.app, name="store")
store.register(app)
app.add_typer(traces.app, name="traces")
app.command("feedback")(traces.feedback)  # `keel feedback` = `keel traces feedback`
app.add_typer(prompts.app, name="prompts")
app.add_typer(experiments.app, name="experiments")
app.add_typer(guard.app, name="guard")
app.add_typer(policy.app, name="policy")


def main() -> None:
    try:
        code = app(standalone_mode=False)  # click answers typer.Exit with its code here, not raised
        if isinstance(code, int) and code:
            sys.exit(code)
    except KeelError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # usage errors (Typer's click exceptions) and anything unexpected
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if os.environ.get("KEEL_DEBUG"):
            raise
        err_console.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc} (set KEEL_DEBUG=1 for details)")
        sys.exit(1)
