"""Agreement of the ``grounded`` guard with hand labels on answer/context pairs over the demo
handbook (`grounded_pairs.yaml`): 36 facts × {supported paraphrase, unsupported variant, partial =
the paraphrase plus another fact's unsupported sentence} = 108 pairs. The guard's verdict: score
1.0 → supported, 0 → unsupported, in between → partial.

    python bench/guards/grounded.py
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from keel.checks.grounded import assess, verdict
from keel.rag.embedder import LocalMiniLM

console = Console(width=140)


def main() -> None:
    facts = yaml.safe_load(Path(__file__).with_name("grounded_pairs.yaml").read_text())
    pairs = []
    for i, f in enumerate(facts):
        pairs.append(([f["source"]], f["supported"], "supported"))
        pairs.append(([f["source"]], f["unsupported"], "unsupported"))
        other = facts[(i + 1) % len(facts)]
        pairs.append(([f["source"], other["source"]], f"{f['supported']} {other['unsupported']}", "partial"))
    embedder = LocalMiniLM()
    table = Table(
        "method", "agreement", "supported", "unsupported", "partial", title=f"grounded vs {len(pairs)} labels"
    )
    for label, embed in (("words + numbers + negation", None), ("+ MiniLM paraphrase", embedder.embed)):
        confusion: Counter[tuple[str, str]] = Counter()
        for sources, answer, truth in pairs:
            score = verdict(assess(answer, sources, embed=embed), 0.8).score
            said = "supported" if score >= 0.999 else "unsupported" if score <= 0.001 else "partial"
            confusion[(truth, said)] += 1
        agree = sum(n for (t, s), n in confusion.items() if t == s) / len(pairs)
        per = {
            k: confusion[(k, k)] / sum(n for (t, _), n in confusion.items() if t == k)
            for k in ("supported", "unsupported", "partial")
        }
        table.add_row(
            label, f"{agree:.1%}", f"{per['supported']:.0%}", f"{per['unsupported']:.0%}", f"{per['partial']:.0%}"
        )
        if embed is not None:
            worst = [(t, s, n) for (t, s), n in confusion.items() if t != s]
            console.print("disagreements (label → guard): " + ", ".join(f"{t}→{s} ×{n}" for t, s, n in sorted(worst)))
    console.print(table)


if __name__ == "__main__":
    main()
