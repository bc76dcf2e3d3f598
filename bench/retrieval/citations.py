"""Does the embedded default cite its sources? The demo golden set answered on the local models,
each answer scored as the model wrote it and after Keel's attribution step, side by side in one run.

    python bench/retrieval/citations.py                          # ~12 min on 2 cores: both tiers
    python bench/retrieval/citations.py --models fast            # the 0.5B default alone, ~4 min
    python bench/retrieval/citations.py --variants instruction few-shot --models fast

Each case of ``support_answer`` (the shipped feature and handbook) is generated once per model and
instruction, with ``cite: model``; the ``attributed`` row is the same answer through
``keel.rag.citing.Citer`` (what ``cite: attribute``, the default, streams — a property test holds the
two equal). Scores: a citation at all; every citation valid (``n`` names a source it was given); the
share of citations on a page the case expects; the share of claims that cite; "I don't know"; the
``grounded`` check; the case's own checks (the suite's pass rate); p50 seconds per answer.

Instructions (``--variants``):

- ``instruction``: the rule and one example sentence (Keel's answer instruction, ``keel.rag.answer.SYSTEM``);
- ``few-shot``: a worked example (two sources, a question, an answer citing each sentence).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import tempfile
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import keel.features.retrieving as retrieving
import keel.rag.answer as answer
from keel.checks import CheckContext, make_check
from keel.checks.grounded import claims_of
from keel.config import settings_from_yaml
from keel.config.yamlfile import parse_yaml
from keel.evals.results import CaseResult
from keel.evals.runner import check_result
from keel.evals.suite import load_suite
from keel.features.pipeline import open_pipeline
from keel.rag import ingest
from keel.rag.answer import check_citations
from keel.rag.backends import Collections
from keel.rag.citing import Citer
from keel.text import cited

console = Console(width=170)
DEMO = Path(__file__).resolve().parents[2] / "src" / "keel" / "demo_project"
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
VARIANTS = {"instruction": answer.SYSTEM, "few-shot": FEW_SHOT}


async def run_variant(root: Path, home: Path, model: str, system: str, bar: Progress) -> list[dict[str, Any]]:
    """Each case answered once; one row as written (``model``) and one after attribution."""
    retrieving.SYSTEM = system  # the instruction features prepend to their sources
    settings = settings_from_yaml(parse_yaml(f"project_root: '{root}'\n", "bench"))  # the embedded default
    suite = load_suite(root / "evals" / "support_answer.yaml")
    grounded = make_check("grounded")
    rows = []
    async with open_pipeline(settings, home, root) as pipe:
        task = bar.add_task(f"{model}", total=len(suite.spec.cases))
        for case in suite.spec.cases:
            t0 = time.perf_counter()
            result = await pipe.run("support_answer", {**suite.spec.defaults, **case.inputs}, model=model)
            seconds = time.perf_counter() - t0
            attributed = replace(result, answer=Citer([s.text for s in result.sources]).cite_all(result.answer))
            for cite, run in (("model", result), ("attributed", attributed)):
                run.citations = check_citations(run.answer, run.sources)
                out = await check_result(pipe, suite, case, run, CaseResult(case.id))
                rows.append(score(case, run, cite, seconds, out.passed, grounded))
            bar.advance(task)
    return rows


def score(case: Any, run: Any, cite: str, seconds: float, passed: bool, grounded: Any) -> dict[str, Any]:
    numbers = cited(run.answer)
    claims = claims_of(run.answer)
    on_page = [c.source.doc_id in case.expected_sources for c in run.citations if c.source is not None]
    ctx = CheckContext(output=run.answer, sources=[s.text for s in run.sources], inputs=case.inputs)
    return {
        "cite": cite,
        "cites": bool(numbers),
        "valid": bool(numbers) and all(c.valid for c in run.citations),
        "on_page": on_page,
        "claims_cited": sum(bool(cited(c)) for c in marked(run.answer)) / len(claims) if claims else None,
        "dont_know": "don't know" in run.answer.casefold() or run.found_nothing,
        "grounded": grounded(ctx).score if run.sources and not run.found_nothing else None,
        "passed": passed,
        "seconds": seconds,
    }  # fmt: skip


def marked(answer_text: str) -> list[str]:
    """The answer's claims with their markers kept (``claims_of`` strips them)."""
    return [s for s in re.split(r"(?<=[.!?])\s+(?!\[)|\n", answer_text) if claims_of(s)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["instruction"], choices=list(VARIANTS))
    parser.add_argument("--models", nargs="+", default=["fast", "accurate"], help="aliases of the embedded default")
    args = parser.parse_args()
    table = Table("model", "instruction", "citations", "cites", "all valid", "on an expected page", "claims cited",
                  "I don't know", "grounded", "golden set passed", "p50 s",
                  title="the demo golden set on the local models (33 cases)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp) / "project", Path(tmp) / "home"
        shutil.copytree(DEMO, root)
        spec = root / "features" / "support_answer.yaml"
        spec.write_text(spec.read_text().replace("  top_k: 4\n", "  top_k: 4\n  cite: model\n"))
        settings = settings_from_yaml(parse_yaml(f"project_root: '{root}'\n", "bench"))
        with closing(Collections(settings, home)) as collections:
            ingest(collections.get("handbook", create=True), [root / "handbook"])
        with Progress(console=console, transient=True) as bar:
            for model in args.models:
                served = settings.deployments[settings.models[model].deployments[0]].model
                for name in args.variants:
                    rows = asyncio.run(run_variant(root, home, model, VARIANTS[name], bar))
                    for cite in ("model", "attributed"):
                        add_row(table, f"{model} ({served})", name, cite, [r for r in rows if r["cite"] == cite])
    console.print(table)


def pct(xs: list[Any]) -> str:
    return f"{statistics.mean(xs):.0%}" if xs else "—"


def add_row(table: Table, model: str, name: str, cite: str, rows: list[dict[str, Any]]) -> None:
    n = len(rows)
    g = [r["grounded"] for r in rows if r["grounded"] is not None]
    table.add_row(
        model, name, cite, pct([r["cites"] for r in rows]), pct([r["valid"] for r in rows]),
        pct([x for r in rows for x in r["on_page"]]),
        pct([r["claims_cited"] for r in rows if r["claims_cited"] is not None]),
        pct([r["dont_know"] for r in rows]), f"{statistics.mean(g):.2f}" if g else "—",
        f"{sum(r['passed'] for r in rows)}/{n}", f"{statistics.median(r['seconds'] for r in rows):.1f}",
    )  # fmt: skip


if __name__ == "__main__":
    main()
