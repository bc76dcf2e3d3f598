"""Does the embedded default cite its sources? The demo golden set answered on the local model under
each answer instruction, side by side in one run.

    python bench/retrieval/citations.py                 # ~7 min on 2 cores (two variants × 33 cases)
    python bench/retrieval/citations.py --variants shipped

For every case of ``support_answer`` (the shipped feature and handbook), the answer is scored for:
a citation at all (``[n]``), every citation valid (``n`` names a source it was given), the share of
its claims that cite, the ``grounded`` check, and the case's own checks (the suite's pass rate).
Variants:

- ``instruction``: the rule and one example sentence (what Keel shipped before this bench);
- ``shipped``: the answer instruction Keel ships now (``keel.rag.answer.SYSTEM``);
- ``few-shot``: a worked example (two sources, a question, an answer citing each sentence).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import keel.features.retrieving as retrieving
import keel.rag.answer as answer
from keel.checks import CheckContext, make_check
from keel.config import settings_from_yaml
from keel.config.yamlfile import parse_yaml
from keel.evals.results import CaseResult
from keel.evals.runner import check_result
from keel.evals.suite import load_suite
from keel.features.pipeline import open_pipeline
from keel.rag import ingest
from keel.rag.backends import Collections
from keel.text import cited

console = Console(width=120)
DEMO = Path(__file__).resolve().parents[2] / "src" / "keel" / "demo_project"
INSTRUCTION = (
    "You answer questions using only the numbered sources below. Cite every claim with the number of its "
    "source in square brackets, like [1] or [2][3]. If the sources do not contain the answer, reply exactly: "
    '"I don\'t know based on the available documents." Do not use outside knowledge.\n'
    "Example of a cited answer: Refunds are issued within five business days [2]."
)
FEW_SHOT = (
    "You answer questions using only the numbered sources below, and you end every sentence with the "
    "number of the source it comes from, in square brackets. If the sources do not contain the answer, "
    'reply exactly: "I don\'t know based on the available documents."\n\n'
    "Example. Sources: [1] refunds.md: Card refunds take 5 to 10 business days. [2] plans.md: Annual plans "
    "can be refunded within 30 days of purchase.\n"
    "Question: Can I get my annual plan refunded, and how long does it take?\n"
    "Answer: Yes, within 30 days of purchase [2]. The money reaches your card in 5 to 10 business days [1].\n\n"
    "Now answer from these sources:"
)
VARIANTS = {"instruction": INSTRUCTION, "shipped": answer.SYSTEM, "few-shot": FEW_SHOT}


async def run_variant(root: Path, home: Path, system: str, bar: Progress) -> list[dict[str, Any]]:
    retrieving.SYSTEM = system  # the instruction features prepend to their sources
    settings = settings_from_yaml(parse_yaml(f"project_root: '{root}'\n", "bench"))  # the embedded default
    suite = load_suite(root / "evals" / "support_answer.yaml")
    grounded = make_check("grounded")
    rows = []
    async with open_pipeline(settings, home, root) as pipe:
        task = bar.add_task("cases", total=len(suite.spec.cases))
        for case in suite.spec.cases:
            t0 = time.perf_counter()
            result = await pipe.run("support_answer", {**suite.spec.defaults, **case.inputs})
            seconds = time.perf_counter() - t0
            out = await check_result(pipe, suite, case, result, CaseResult(case.id))
            numbers = cited(result.answer)
            claims = [s for s in result.answer.replace("\n", " ").split(". ") if len(s.split()) >= 3]
            ctx = CheckContext(output=result.answer, sources=[s.text for s in result.sources], inputs=case.inputs)
            rows.append({
                "case": case.id,
                "cites": bool(numbers),
                "valid": bool(numbers) and all(1 <= n <= len(result.sources) for n in numbers),
                "claims_cited": sum(bool(cited(c)) for c in claims) / len(claims) if claims else 0.0,
                "dont_know": "don't know" in result.answer.casefold() or result.found_nothing,
                "grounded": grounded(ctx).score if result.sources and not result.found_nothing else None,
                "passed": out.passed,
                "seconds": seconds,
            })  # fmt: skip
            bar.advance(task)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    table = Table("variant", "cites", "all citations valid", "claims cited", "I don't know", "grounded",
                  "golden set passed", "p50 s", title="the demo golden set on the local model (33 cases)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp) / "project", Path(tmp) / "home"
        shutil.copytree(DEMO, root)
        settings = settings_from_yaml(parse_yaml(f"project_root: '{root}'\n", "bench"))
        with closing(Collections(settings, home)) as collections:
            ingest(collections.get("handbook", create=True), [root / "handbook"])
        with Progress(console=console, transient=True) as bar:
            for name in args.variants:
                rows = asyncio.run(run_variant(root, home, VARIANTS[name], bar))
                n = len(rows)
                answered = [r for r in rows if not r["dont_know"]]
                g = [r["grounded"] for r in rows if r["grounded"] is not None]
                table.add_row(
                    name, f"{sum(r['cites'] for r in rows) / n:.0%}", f"{sum(r['valid'] for r in rows) / n:.0%}",
                    f"{statistics.mean(r['claims_cited'] for r in answered):.0%}" if answered else "—",
                    f"{sum(r['dont_know'] for r in rows) / n:.0%}", f"{statistics.mean(g):.2f}" if g else "—",
                    f"{sum(r['passed'] for r in rows)}/{n}", f"{statistics.median(r['seconds'] for r in rows):.1f}",
                )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
