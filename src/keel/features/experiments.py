"""Sticky A/B assignment: hash (experiment, user) to a point in [0, 1) and pick the arm whose share
covers it, so a user always lands in the same arm while the split holds."""

from __future__ import annotations

import hashlib

from keel.errors import UserError


def assign(experiment: str, user: str, arms: dict[str, float]) -> str:
    """The arm for ``user``: ``arms`` maps arm name → traffic weight (any positive scale)."""
    if not arms:
        raise UserError(f"experiment '{experiment}' has no arms")
    if any(w < 0 for w in arms.values()) or sum(arms.values()) <= 0:
        raise UserError(f"experiment '{experiment}': weights must be ≥ 0 and not all 0")
    digest = hashlib.sha256(f"{experiment}\x00{user}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    total = sum(arms.values())
    running = 0.0
    for name, weight in sorted(arms.items()):
        running += weight / total
        if point < running:
            return name
    return max((n for n, w in arms.items() if w > 0), key=lambda n: n)
