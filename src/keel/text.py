"""Text helpers every layer shares. Token counts are estimates where a model's own tokenizer is not
at hand (hosted models' tokenizers are not available offline): one rule, here, for all of them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

CHARS_PER_TOKEN = 4  # English prose averages ~4 characters a token on GPT-style tokenizers


def estimate_tokens(text: str) -> int:
    """The usual estimate of a text's tokens (≥ 1): what size checks and context fitting use."""
    return len(text) // CHARS_PER_TOKEN + 1


def upper_bound_tokens(messages: Sequence[Any]) -> int:
    """A deliberately high estimate of a request's input (3 characters a token, 12 characters per
    message for its role and framing): budget reservations over-count, never under-count."""
    chars = 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        chars += len(content) if isinstance(content, str) else len(orjson.dumps(content))
        chars += 12
    return math.ceil(chars / 3)
