"""Per-queue statistics: the backlog and its age, SLA breaches, approve/edit/reject rates per prompt
version and per model, and whether ``confidence`` agrees with the reviewers — the figures that tell
a team whether its ``review.when`` threshold is right.

Agreement treats an edit or a reject as "the answer was wrong". For each threshold ``t`` it gives
the share of wrong answers that ``confidence < t`` would have caught (recall) against the share of
answers it would have sent (load) and how many of those were wrong (precision), and overall the AUC:
the chance that a wrong answer scored lower than a right one (0.5: confidence says nothing). Items
routed *because* their confidence was low over-represent the low end; the sampled items (``sample:``)
are an unbiased slice, so their AUC is shown beside it.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from keel.stats import auc

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def rates(rows: Iterable[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """approve/edit/reject counts and rates, grouped by ``key`` (prompt_version, model)."""
    groups: dict[Any, Counter[str]] = defaultdict(Counter)
    for row in rows:
        groups[row[key]][row["action"]] += 1
    out = []
    for value, counts in sorted(groups.items(), key=lambda kv: (kv[0] is None, str(kv[0]))):
        n = sum(counts.values())
        out.append(
            {
                key: value,
                "n": n,
                **{action: counts[action] for action in ("approve", "edit", "reject")},
                "approve_rate": round(counts["approve"] / n, 4),
                "edit_rate": round(counts["edit"] / n, 4),
                "reject_rate": round(counts["reject"] / n, 4),
            }
        )
    return out


def agreement(rows: Sequence[dict[str, Any]], thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """How well ``confidence < t`` finds the answers reviewers edited or rejected."""
    scored = [
        (float(r["confidence"]), r["action"] != "approve", bool(r["sampled"]))
        for r in rows
        if r["confidence"] is not None
    ]
    wrong = sum(1 for _, bad, _ in scored if bad)
    table = []
    for t in thresholds:
        flagged = [bad for c, bad, _ in scored if c < t]
        caught = sum(flagged)
        table.append(
            {
                "threshold": t,
                "load": round(len(flagged) / len(scored), 4) if scored else None,
                "recall": round(caught / wrong, 4) if wrong else None,
                "precision": round(caught / len(flagged), 4) if flagged else None,
            }
        )
    sampled = [(c, bad) for c, bad, s in scored if s]
    return {
        "n": len(scored),
        "wrong": wrong,
        "auc": _auc([(c, bad) for c, bad, _ in scored]),
        "sampled_n": len(sampled),
        "sampled_auc": _auc(sampled),
        "thresholds": table,
    }


def _auc(pairs: Sequence[tuple[float, bool]]) -> float | None:
    """P(a wrong answer's confidence < a right one's): the AUC of (1 - confidence) as a wrongness score."""
    labels = [bad for _, bad in pairs]
    if not any(labels) or all(labels):
        return None
    return round(auc([1.0 - c for c, _ in pairs], labels), 4)


def queue_stats(queues: Sequence[dict[str, Any]], decisions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Everything ``keel review stats`` and ``GET /v1/review/stats`` show, one entry per queue."""
    now = time.time()
    by_queue: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in decisions:
        by_queue[row["queue"]].append(row)
    out = []
    for q in queues:
        rows = by_queue.get(q["queue"], [])
        out.append(
            {
                "queue": q["queue"],
                "backlog": int(q["backlog"] or 0),
                "claimed": int(q["claimed"] or 0),
                "oldest_age_s": round(now - float(q["oldest"]), 1) if q["oldest"] is not None else None,
                "sla_breaches": int(q["breaches"] or 0),
                "decided": int(q["decided"] or 0),
                "expired": int(q["expired"] or 0),
                "by_prompt_version": rates(rows, "prompt_version"),
                "by_model": rates(rows, "model"),
                "by_reviewer": rates(rows, "reviewer"),  # each reviewer's progress and their verdicts
                "agreement": agreement(rows),
            }
        )
    return out
