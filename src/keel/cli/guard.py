"""``keel guard train`` (the injection classifier, reproducibly) and ``keel guard check "text"``."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path

import typer
from rich.table import Table

from keel.cli.common import console

app = typer.Typer(help="Guards: screen text for prompt injection; train the classifier.", no_args_is_help=True)


@app.command("train")
def train_cmd(
    version: str = typer.Option("injection-v1", help="the artifact's name: <version>.joblib and .json"),
    out: Path | None = typer.Option(None, help="folder to write to (default: the package's models folder)"),
    max_fpr: float = typer.Option(0.03, min=0.001, max=0.5, help="validation false-positive ceiling on benign text"),
) -> None:
    """Train on the labelled train splits, tune on validation, report on test; write the artifact."""
    from keel.guards.injection import MODELS, save, train

    with console.status("training…") as status:
        trained = train(version=version, max_fpr=max_fpr, progress=lambda m: status.update(m))
    model_path, meta_path = save(trained, out or MODELS)
    table = Table("split", "dataset", "precision", "recall", "F1", "FPR (benign)", "n",
                  title=f"{version}: C={trained.report['C']:g}, threshold {trained.threshold:.2f}")  # fmt: skip
    for split in ("validation", "test"):
        for name, s in trained.report[split].items():
            table.add_row(split, name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}",
                          f"{s['fpr']:.3f}", str(s["n"]))  # fmt: skip
    console.print(table)
    size = model_path.stat().st_size / 1e6
    console.print(f"wrote {model_path} ({size:.1f} MB) and {meta_path}", highlight=False)


@app.command("check")
def check_cmd(
    text: str = typer.Argument(..., help="the text to screen ('-' reads standard input)"),
    retrieved: bool = typer.Option(False, "--retrieved", help="screen it as a retrieved document"),
    json: bool = typer.Option(False, "--json", help="print the verdict as JSON"),
) -> None:
    """Every guard's verdict on a text, with its timing."""
    import sys

    from keel.guards.screen import screen

    body = sys.stdin.read() if text == "-" else text
    screen(".")  # load the model before timing
    verdict = screen(body, retrieved=retrieved)
    if json:
        print(jsonlib.dumps({"flagged": verdict.flagged, "score": verdict.score, "threshold": verdict.threshold,
                             "reasons": verdict.reasons, "ms": verdict.ms}))  # fmt: skip
        return
    mark = "[red]flagged[/red]" if verdict.flagged else "[green]clean[/green]"
    table = Table("guard", "verdict", "detail", title=f"{len(body):,} characters")
    table.add_row("injection", mark, f"score {verdict.score:.3f} (threshold {verdict.threshold:.2f})")
    for reason in verdict.reasons:
        table.add_row("", "", reason)
    console.print(table)
    console.print(f"screened in {verdict.ms:.2f} ms", highlight=False)
