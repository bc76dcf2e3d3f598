"""Text analysis for keyword search: Lucene's English analysis, so BM25 means what it means there.

lowercase → words of 2+ word characters (``\\b\\w\\w+\\b``) → Lucene's 33 English stopwords →
Snowball (Porter2) English stemmer.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import Stemmer

STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    }
)
_WORDS = re.compile(r"(?u)\b\w\w+\b")
_STEMMER = Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


def terms(text: str) -> list[str]:
    return [_stem(w) for w in _WORDS.findall(text.lower()) if w not in STOPWORDS]


def term_counts(text: str) -> Counter[str]:
    return Counter(terms(text))
