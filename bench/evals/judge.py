"""How much an LLM judge flips between runs, and what voting buys: ``llm-rubric`` on the local model
(the embedded default) over the demo feature's answers.

    python bench/evals/judge.py               # 20 demo cases (~6 min on 2 cores)
    python bench/evals/judge.py --cases 33

The demo feature answers the first ``--cases`` questions of ``evals/support_answer.yaml`` once; then
each judge setting grades every answer twice, independently. **Run-to-run agreement** is the share
of cases whose pass/fail verdict is the same both times. Settings: one greedy run (temperature 0),
one sampled run (temperature 0.7) and a majority of three sampled runs. **Agreement with the string
check** compares the judge's verdict with the case's own ``contains-any`` check (a rough accuracy
proxy: the string check can be wrong too). A reply that does not parse would be an error, counted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel.checks import CheckContext, make_check
from keel.checks.base import JudgeError
from keel.cli.demo import PROJECT
from keel.config import load_settings
from keel.evals.runner import JudgeCalls
from keel.evals.suite import load_suite
from keel.features.pipeline import open_pipeline
from keel.rag import ingest

console = Console(width=140)
RUBRIC = (
    "The answer tells the customer the specific fact the reference names (a number, limit, plan or "
    "step), plainly and correctly. Vague, evasive or contradicting answers fail."
)
SETTINGS = {
    "1 run, greedy (t=0)": {"runs": 1, "temperature": 0.0},
    "1 run, sampled (t=0.7)": {"runs": 1, "temperature": 0.7},
    "majority of 3 (t=0.7)": {"runs": 3, "aggregate": "majority", "temperature": 0.7},
}


async def measure(cases: int) -> None:
    suite = load_suite(PROJECT / "evals" / "support_answer.yaml")
    chosen = suite.spec.cases[:cases]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None)
        async with open_pipeline(settings, Path(tmp), PROJECT) as pipeline:
            assert pipeline.collections is not None
            ingest(pipeline.collections.get("handbook", create=True), [PROJECT / "handbook"])
            columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console) as bar:
                task = bar.add_task("answering", total=len(chosen))
                contexts: list[tuple[CheckContext, bool]] = []
                for case in chosen:
                    result = await pipeline.run(suite.spec.feature, dict(case.inputs), user="bench")
                    ctx = CheckContext(
                        output=result.answer,
                        inputs=dict(case.inputs),
                        expected="Mentions one of: " + "; ".join(_wanted(case.checks)),
                        sources=[s.text for s in result.sources],
                    )
                    own = [make_check(c) for c in case.checks]
                    contexts.append((ctx, all(c(ctx).passed for c in own)))
                    bar.advance(task)
                verdicts: dict[str, list[list[bool | None]]] = {}
                seconds: dict[str, list[float]] = {}
                for name, options in SETTINGS.items():
                    check = make_check({"type": "llm-rubric", "rubric": RUBRIC, **options})
                    task = bar.add_task(name, total=2 * len(contexts))
                    reps: list[list[bool | None]] = [[], []]
                    for rep in reps:
                        for ctx, _ in contexts:
                            ctx.judge = JudgeCalls(
                                pipeline, feature=f"eval:{suite.name}", model=None, parent=None, tenant="default"
                            )
                            t0 = time.perf_counter()
                            try:
                                rep.append((await check.evaluate(ctx)).passed)
                            except JudgeError:
                                rep.append(None)
                            seconds.setdefault(name, []).append(time.perf_counter() - t0)
                            bar.advance(task)
                    verdicts[name] = reps
    truth = [passed for _, passed in contexts]
    table = Table(
        "judge setting", "run-to-run agreement", "agrees with string check", "unparseable", "s per grade (p50)",
        title=f"llm-rubric on the local model, {len(contexts)} demo answers, each graded twice",
    )  # fmt: skip
    for name, (first, second) in verdicts.items():
        same = sum(a == b and a is not None for a, b in zip(first, second, strict=True)) / len(first)
        agree = [a == t for a, t in zip(first + second, truth + truth, strict=True) if a is not None]
        errors = sum(v is None for v in first + second)
        table.add_row(
            name,
            f"{same:.0%}",
            f"{sum(agree) / len(agree):.0%}" if agree else "—",
            str(errors),
            f"{statistics.median(seconds[name]):.1f}",
        )
    console.print(table)
    console.print(f"string checks pass {sum(truth)}/{len(truth)} of these answers")


def _wanted(checks: list[Any]) -> list[str]:
    out: list[str] = []
    for c in checks:
        value = c.get("value") if isinstance(c, dict) else None
        out += value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(measure(args.cases))


if __name__ == "__main__":
    main()
