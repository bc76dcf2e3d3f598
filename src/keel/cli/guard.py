"""``keel guard train`` (the injection classifier, reproducibly) and ``keel guard check "text"``."""

from __future__ import annotations

import enum
import json as jsonlib
from pathlib import Path

import typer
from rich.table import Table

from keel.cli.common import console


class Via(enum.StrEnum):
    """The channels of keel.guards.screen (typer lists them in --help and refuses others)."""

    user = "user"
    retrieved = "retrieved"
    tool = "tool"
    memory = "memory"


app = typer.Typer(help="Guards: screen text for prompt injection; train the classifier.", no_args_is_help=True)


@app.command("train")
def train_cmd(
    version: str = typer.Option("injection-v2", help="the artifact's name: <version>.joblib and .json"),
    out: Path | None = typer.Option(None, help="folder to write to (default: the package's models folder)"),
    user_fpr: float | None = typer.Option(
        None, min=0.001, max=0.5, help="false-positive ceiling for prompts, across datasets (default 0.05)"
    ),
    document_fpr: float | None = typer.Option(
        None, min=0.001, max=0.5, help="the same for documents and tool output (default 0.05)"
    ),
    fast: bool = typer.Option(False, "--fast", help="tune thresholds on the validation splits (no leave-one-out)"),
) -> None:
    """Train on every labelled set but the held-out one; tune thresholds across datasets; write the artifact."""
    from keel.guards.injection import MODELS, save, train

    ceilings = {k: v for k, v in (("user", user_fpr), ("document", document_fpr)) if v is not None}
    with console.status("training…") as status:
        trained = train(version=version, ceilings=ceilings, cross=not fast, progress=lambda m: status.update(m))
    model_path, meta_path = save(trained, out or MODELS)
    table = Table("split", "dataset", "precision", "recall", "F1", "FPR (benign)", "n",
                  title=f"{version}: C={trained.report['C']:g}, thresholds "
                  + ", ".join(f"{ch} {th:.2f}" for ch, th in trained.thresholds.items()))  # fmt: skip
    for split in ("validation", "test", "left_out"):
        for name, s in trained.report[split].items():
            table.add_row(split, name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}",
                          f"{s['fpr']:.3f}", str(s["n"]))  # fmt: skip
    console.print(table)
    size = model_path.stat().st_size / 1e6
    console.print(f"wrote {model_path} ({size:.1f} MB) and {meta_path}", highlight=False)


@app.command("check")
def check_cmd(
    text: str = typer.Argument(..., help="the text to screen ('-' reads standard input)"),
    channel: Via = typer.Option(Via.user, "--channel", help="where the text comes from"),
    retrieved: bool = typer.Option(False, "--retrieved", help="short for --channel retrieved"),
    json: bool = typer.Option(False, "--json", help="print the verdict as JSON"),
) -> None:
    """Every guard's verdict on a text, with its timing."""
    import sys

    from keel.guards.screen import screen

    body = sys.stdin.read() if text == "-" else text
    screen(".")  # load the model before timing
    verdict = screen(body, channel="retrieved" if retrieved else channel.value)
    if json:
        print(jsonlib.dumps({"flagged": verdict.flagged, "score": verdict.score, "threshold": verdict.threshold,
                             "channel": verdict.channel, "reasons": verdict.reasons, "ms": verdict.ms}))  # fmt: skip
        return
    mark = "[red]flagged[/red]" if verdict.flagged else "[green]clean[/green]"
    table = Table("guard", "verdict", "detail", title=f"{len(body):,} characters")
    table.add_row("injection", mark, f"score {verdict.score:.3f} (threshold {verdict.threshold:.2f})")
    for reason in verdict.reasons:
        table.add_row("", "", reason)
    console.print(table)
    console.print(f"screened in {verdict.ms:.2f} ms", highlight=False)
