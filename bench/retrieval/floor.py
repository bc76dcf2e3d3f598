"""The retrieval floor (``min_score``): how many answerable questions keep their source above it, and
how many off-topic questions it turns away before any model call.

    python bench/retrieval/floor.py

The demo handbook is ingested; its golden set's 33 questions (each with the page that answers it)
are the answerable ones, and 60 questions about anything else are the off-topic ones. Each question
is retrieved as ``support_answer`` does (hybrid, top 4) with the floor off, keeping every hit's
cosine; then, for each floor, a question is *refused* when no hit clears it (Keel answers "I don't
know" without calling a model) and *answered from its source* when a hit from its page clears it.

The floor is chosen on one half of the answerable questions — the highest that keeps all their
sources, less a 0.15 margin for phrasings a golden set lacks — and reported on the other half and on
the off-topic questions (two folds, each question held out once), so the figures are not from the
data the choice was made on.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from contextlib import closing
from pathlib import Path

from rich.console import Console
from rich.table import Table

from keel.config import settings_from_yaml
from keel.config.yamlfile import parse_yaml
from keel.evals.suite import load_suite
from keel.rag import ingest
from keel.rag.backends import Collections
from keel.rag.retrieval import Query, retrieve

console = Console(width=130)
DEMO = Path(__file__).resolve().parents[2] / "src" / "keel" / "demo_project"
FLOORS = [round(0.10 + 0.05 * i, 2) for i in range(15)]  # 0.10 … 0.80
MARGIN = 0.15
OFF_TOPIC = [
    "What is the capital of Mongolia?", "How do I bake sourdough bread?", "Who won the 1998 football World Cup?",
    "What is the boiling point of water on Everest?", "How many moons does Jupiter have?",
    "What is a good name for a golden retriever?", "How do I change a flat bicycle tyre?",
    "What causes the northern lights?", "Recommend a novel set in Lisbon.", "How tall is the Eiffel Tower?",
    "What is the plot of Hamlet?", "How do I grow tomatoes on a balcony?", "What is the speed of sound in air?",
    "Who painted the Girl with a Pearl Earring?", "How do I remove a red wine stain?",
    "What is the population of Canada?", "How do vaccines train the immune system?", "What is a haiku?",
    "How long should I boil an egg?", "Which planet has the longest day?", "How do I tie a bowline knot?",
    "What is the tallest mountain in Africa?", "How does a sailboat sail upwind?", "What is photosynthesis?",
    "Who wrote One Hundred Years of Solitude?", "How many bones are in the human body?",
    "What is the best way to learn the guitar?", "How do I make cold brew coffee?", "Why is the sky blue?",
    "What language is spoken in Brazil?", "How do I prune a rose bush?", "What is the rule of thirds in photography?",
    "When did the Roman Empire fall?", "How do tides work?", "What is a black hole?",
    "How do I train for a marathon?", "What is the difference between a frog and a toad?",
    "How do I fold a paper crane?", "What is the chemical formula of table salt?", "Who discovered penicillin?",
    "How do I keep basil alive indoors?", "What is the largest desert in the world?", "How do bees make honey?",
    "What should I pack for a week in Iceland?", "How is cheese made?", "What is the Fibonacci sequence?",
    "Why do cats purr?", "How do I descale a kettle?", "What is the longest river in Europe?",
    "How do I write a cover letter for a teaching job?", "What does a sommelier do?", "How do earthquakes happen?",
    "What is the recipe for pad thai?", "Who was the first person in space?", "How do I clean a cast iron pan?",
    "What are the rules of cricket?", "How do hummingbirds hover?", "What is impressionism in art?",
    "How many players are on a rugby team?", "What is the meaning of the word serendipity?",
]  # fmt: skip


def shares(rows: list[tuple[bool, list[tuple[float, bool]]]], floor: float) -> tuple[int, int]:
    """(answered from their source, refused) among ``rows``: (answerable?, [(cosine, from its page)])."""
    sourced = refused = 0
    for _, hits in rows:
        kept = [(c, own) for c, own in hits if c >= floor]
        refused += not kept
        sourced += any(own for _, own in kept)
    return sourced, refused


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="keel-floor-"))
    settings = settings_from_yaml(parse_yaml("{}", "bench"))
    suite = load_suite(DEMO / "evals" / "support_answer.yaml")
    answerable: list[tuple[bool, list[tuple[float, bool]]]] = []
    off_topic: list[tuple[bool, list[tuple[float, bool]]]] = []
    with closing(Collections(settings, tmp / "home")) as collections:
        col = collections.get("handbook", create=True)
        ingest(col, [DEMO / "handbook"])
        for case in suite.spec.cases:
            hits = await retrieve(col, Query(case.inputs["question"], top_k=4, min_score=-1.0))
            expected = set(case.expected_sources or [])
            answerable.append((True, [(h.vector_score or 0.0, h.doc_id in expected) for h in hits]))
        for question in OFF_TOPIC:
            hits = await retrieve(col, Query(question, top_k=4, min_score=-1.0))
            off_topic.append((False, [(h.vector_score or 0.0, False) for h in hits]))
    shutil.rmtree(tmp, ignore_errors=True)

    table = Table("min_score", "answerable: source kept", "answerable: refused", "off-topic: refused",
                  title=f"all {len(answerable)} answerable and {len(off_topic)} off-topic questions")  # fmt: skip
    for floor in FLOORS:
        kept, wrongly = shares(answerable, floor)
        _, refused = shares(off_topic, floor)
        table.add_row(f"{floor:.2f}", f"{kept}/{len(answerable)} ({kept / len(answerable):.0%})",
                      f"{wrongly}", f"{refused}/{len(off_topic)} ({refused / len(off_topic):.0%})")  # fmt: skip
    console.print(table)

    rng = random.Random(7)
    a, o = answerable[:], off_topic[:]
    rng.shuffle(a)
    rng.shuffle(o)
    folds = [(a[::2], o[::2], a[1::2], o[1::2]), (a[1::2], o[1::2], a[::2], o[::2])]
    columns = (
        "fold",
        "floor chosen (on the other half)",
        "held-out: answerable source kept",
        "held-out: off-topic refused",
    )
    held = Table(*columns, title="choose the floor on one half, report on the other")
    for n, (tune_a, _tune_o, test_a, test_o) in enumerate(folds, 1):
        # the highest floor that keeps every answerable source of this half, less a margin for the
        # phrasings a golden set lacks (real users are less literal than its questions)
        base = shares(tune_a, -1.0)[0]
        edge = max(f for f in FLOORS if shares(tune_a, f)[0] >= base)
        chosen = round(edge - MARGIN, 2)
        kept, _ = shares(test_a, chosen)
        _, refused = shares(test_o, chosen)
        held.add_row(str(n), f"{chosen:.2f}", f"{kept}/{len(test_a)} ({kept / len(test_a):.0%})",
                     f"{refused}/{len(test_o)} ({refused / len(test_o):.0%})")  # fmt: skip
    console.print(held)


if __name__ == "__main__":
    asyncio.run(main())
