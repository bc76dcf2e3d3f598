"""The built-in deterministic checks. Each factory takes the check's parameters and returns a
function from context to verdict; ``registry`` wraps them (``not-`` prefix, metadata)."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from keel.checks.base import CheckContext, CheckError, Verdict
from keel.checks.schema import parse_and_validate, validator  # the same validation as serving
from keel.errors import ConfigError
from keel.text import CITATION, content_words, uncited

Run = Callable[[CheckContext], Verdict | Awaitable[Verdict]]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
DONT_KNOW = ("i don't know", "i do not know", "i'm not sure", "no information", "not in the documents", "cannot find")
REFUSAL = (
    "i can't help",
    "i cannot help",
    "i can't assist",
    "i cannot assist",
    "i won't",
    "i'm unable to",
    "i am unable to",
)


class Params:
    """A check's parameters, read with a precise error when one is missing or of the wrong type."""

    def __init__(self, check: str, data: dict[str, Any]) -> None:
        self.check = check
        self.data = data
        self.used: set[str] = {"type", "weight", "name"}
        self.needs_llm = False  # a factory sets this when its check calls a model

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise CheckError(f"check '{self.check}' needs '{key}'")
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
            names = "/".join(k.__name__ for k in _kinds(kind))
            raise CheckError(f"check '{self.check}': '{key}' must be {names}, not {type(value).__name__}")
        return value

    def number(self, key: str, default: Any = ..., low: float = -math.inf, high: float = math.inf) -> float:
        value = float(self.get(key, (int, float), default))
        if not low <= value <= high:
            raise CheckError(f"check '{self.check}': '{key}' must be between {low:g} and {high:g}, not {value:g}")
        return value

    def strings(self, key: str) -> list[str]:
        value = self.get(key, (list, str))
        items = [value] if isinstance(value, str) else value
        if not items or not all(isinstance(v, str) for v in items):
            raise CheckError(f"check '{self.check}': '{key}' must be a string or a non-empty list of strings")
        return items

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise CheckError(f"check '{self.check}': unknown parameter(s) {unknown}")


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _yes(passed: bool, reason_ok: str, reason_bad: str) -> Verdict:
    return Verdict(passed, 1.0 if passed else 0.0, reason_ok if passed else reason_bad)


def _expected_text(p: Params, ctx: CheckContext) -> str:
    value = p.data.get("value", ctx.expected)
    if not isinstance(value, str):
        raise CheckError(f"check '{p.check}' needs a string 'value' (or the case's expected answer)")
    return value


# -- text ------------------------------------------------------------------------------------------


def equals(p: Params) -> Run:
    p.used.add("value")
    strip = p.get("strip", bool, True)

    def run(ctx: CheckContext) -> Verdict:
        want = p.data.get("value", ctx.expected)
        if isinstance(want, str):
            got = ctx.output.strip() if strip else ctx.output
            return _yes(got == (want.strip() if strip else want), "equal", f"expected {want!r}, got {got[:200]!r}")
        got_value = ctx.value if ctx.value is not None else ctx.output
        return _yes(got_value == want, "equal", f"expected {want!r}, got {got_value!r}"[:300])

    return run


def contains(p: Params, *, fold: bool = False) -> Run:
    p.used.add("value")

    def run(ctx: CheckContext) -> Verdict:
        want = _expected_text(p, ctx)
        text, needle = (ctx.output.casefold(), want.casefold()) if fold else (ctx.output, want)
        return _yes(needle in text, f"contains {want!r}", f"does not contain {want!r}")

    return run


def contains_some(p: Params, *, every: bool) -> Run:
    wanted = p.strings("value")
    fold = p.get("ignore_case", bool, False)

    def run(ctx: CheckContext) -> Verdict:
        text = ctx.output.casefold() if fold else ctx.output
        found = [w for w in wanted if (w.casefold() if fold else w) in text]
        missing = [w for w in wanted if w not in found]
        passed = not missing if every else bool(found)
        return Verdict(passed, len(found) / len(wanted), f"found {found}, missing {missing}")

    return run


def regex(p: Params) -> Run:
    pattern = p.get("value", str)
    try:
        compiled = re.compile(pattern, re.I if p.get("ignore_case", bool, False) else 0)
    except re.error as exc:
        raise CheckError(f"check 'regex': {pattern!r} is not a valid regular expression ({exc})") from None

    def run(ctx: CheckContext) -> Verdict:
        return _yes(compiled.search(ctx.output) is not None, f"matches /{pattern}/", f"does not match /{pattern}/")

    return run


def starts_with(p: Params) -> Run:
    p.used.add("value")

    def run(ctx: CheckContext) -> Verdict:
        want = _expected_text(p, ctx)
        return _yes(ctx.output.lstrip().startswith(want), f"starts with {want!r}", f"does not start with {want!r}")

    return run


def levenshtein(p: Params) -> Run:
    threshold = p.number("threshold", 0.8, 0, 1)
    p.used.add("value")

    def run(ctx: CheckContext) -> Verdict:
        want = _expected_text(p, ctx)
        got = ctx.output.strip()
        similarity = 1 - _distance(got, want.strip()) / max(len(got), len(want.strip()), 1)
        return Verdict(similarity >= threshold, similarity, f"similarity {similarity:.2f} (threshold {threshold:g})")

    return run


def _distance(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def similar(p: Params) -> Run:
    threshold = p.number("threshold", 0.8, -1, 1)
    p.used.add("value")

    def run(ctx: CheckContext) -> Verdict:
        if ctx.embed is None:
            raise CheckError("check 'similar' needs an embedder; the eval runner supplies the configured one")
        want = _expected_text(p, ctx)
        vectors = ctx.embed([ctx.output, want])
        cosine = float(vectors[0] @ vectors[1])
        return Verdict(cosine >= threshold, max(0.0, cosine), f"cosine {cosine:.3f} (threshold {threshold:g})")

    return run


# -- structure -------------------------------------------------------------------------------------


def is_json(p: Params) -> Run:
    def run(ctx: CheckContext) -> Verdict:
        try:
            orjson.loads(ctx.output)
        except orjson.JSONDecodeError as exc:
            return Verdict(False, 0.0, f"not JSON: {exc}")
        return Verdict(True, 1.0, "valid JSON")

    return run


def json_schema(p: Params) -> Run:
    schema = p.get("value", dict)
    try:
        validator(schema)  # a broken schema is a configuration error, found before the run
    except ConfigError as exc:
        raise CheckError(f"check '{p.check}': {exc.message}") from None

    def run(ctx: CheckContext) -> Verdict:
        _, problem = parse_and_validate(ctx.output, schema)
        return _yes(problem is None, "valid against the schema", f"invalid: {problem}")

    return run


# -- behaviour -------------------------------------------------------------------------------------


def ceiling(
    key: str, read: Callable[[CheckContext], float | None], shown: str, missing: str
) -> Callable[[Params], Run]:
    """A check that passes when a measured number is at most the configured ``key``."""

    def factory(p: Params) -> Run:
        limit = p.number(key, ..., 0)

        def run(ctx: CheckContext) -> Verdict:
            got = read(ctx)
            if got is None:
                return Verdict(False, 0.0, missing)  # unknown never passes a limit
            return _yes(got <= limit, f"{shown.format(got)} ≤ {limit:g}", f"{shown.format(got)} > {limit:g}")

        return run

    return factory


latency = ceiling("max_ms", lambda ctx: ctx.latency_ms, "{:.0f} ms", "no latency recorded")
cost = ceiling("max_usd", lambda ctx: ctx.cost_usd, "${:.6f}", "cost unknown (unpriced model)")


def finish_reason(p: Params) -> Run:
    want = p.get("value", str, "stop")

    def run(ctx: CheckContext) -> Verdict:
        return _yes(ctx.finish_reason == want, f"finished: {want}", f"finished: {ctx.finish_reason}, not {want}")

    return run


def phrases(words: tuple[str, ...], what: str) -> Callable[[Params], Run]:
    def factory(p: Params) -> Run:
        extra = p.strings("phrases") if "phrases" in p.data else []

        def run(ctx: CheckContext) -> Verdict:
            text = ctx.output.casefold().replace("’", "'")
            hit = next((w for w in (*words, *(e.casefold() for e in extra)) if w in text), None)
            return _yes(hit is not None, f"{what} ({hit!r})", f"no {what}")

        return run

    return factory


def citations(p: Params) -> Run:
    """The one citation check (evals, routes and the output guard): every [n] names a source that
    was given, and the sentence citing it shares a content word with that source. An answer with no
    citation fails when ``required`` (the default); otherwise it passes, scoring 0.5 when it had
    sources to cite and ignored them."""
    required = p.get("required", bool, True)

    def run(ctx: CheckContext) -> Verdict:
        parts = [s for s in _SENTENCE_END.split(ctx.output) if s.strip()]
        marks = [(s, [int(n) for n in CITATION.findall(s)]) for s in parts]
        numbers = [n for _, ns in marks for n in ns]
        if not numbers:
            if required:
                return Verdict(False, 0.0, "the answer cites no source")
            return Verdict(True, 0.5 if ctx.sources else 1.0, "no citations (not required)")
        missing: set[int] = set()
        unrelated: list[str] = []
        for sentence, ns in marks:
            words = set(content_words(uncited(sentence)))
            for n in ns:
                if not 1 <= n <= len(ctx.sources):
                    missing.add(n)
                elif words and not words & set(content_words(ctx.sources[n - 1])):
                    unrelated.append(f"[{n}] shares no words with its sentence")
        good = len(numbers) - sum(1 for n in numbers if n in missing) - len(unrelated)
        problems = [f"[{n}] names no source" for n in sorted(missing)] + unrelated
        reason = (
            f"cites {sorted(set(numbers))}; " + "; ".join(problems) if problems else f"{good} citation(s) check out"
        )
        return Verdict(not problems, good / len(numbers), reason)

    return run


def schema_valid(p: Params) -> Run:
    """Structured output: some attempt validated against its schema (not: the fallback was served)."""

    def run(ctx: CheckContext) -> Verdict:
        if ctx.structured_ok is None:
            return Verdict(True, 1.0, "not a structured answer")
        return _yes(ctx.structured_ok, "valid", "no attempt was valid")

    return run


# -- retrieval -------------------------------------------------------------------------------------

RankMetric = Callable[[list[str], set[str], int], tuple[float, str]]


def ranking(metric: RankMetric) -> Callable[[Params], Run]:
    """A check on the retrieved documents: ``metric(top k ids, expected ids, k)`` → (score, reason).
    It passes when the score is above 0 and at least ``threshold``."""

    def factory(p: Params) -> Run:
        k = int(p.number("k", 5, 1, 1000))
        threshold = p.number("threshold", 0.0, 0, 1)

        def run(ctx: CheckContext) -> Verdict:
            if not ctx.expected_ids:
                raise CheckError(f"check '{p.check}' needs the case's expected documents (expected_sources)")
            score, reason = metric(list(ctx.retrieved_ids)[:k], set(ctx.expected_ids), k)
            return Verdict(score >= threshold and score > 0, score, reason)

        return run

    return factory


def _recall(got: list[str], want: set[str], k: int) -> tuple[float, str]:
    score = len(want & set(got)) / len(want)
    return score, f"recall@{k} {score:.2f}"


def _mrr(got: list[str], want: set[str], k: int) -> tuple[float, str]:
    rank = next((i for i, d in enumerate(got, 1) if d in want), None)
    return (1 / rank, f"first relevant at rank {rank}") if rank else (0.0, "none found")


def _ndcg(got: list[str], want: set[str], k: int) -> tuple[float, str]:
    dcg = sum(1 / math.log2(i + 1) for i, d in enumerate(got, 1) if d in want)
    ideal = sum(1 / math.log2(i + 1) for i in range(1, min(len(want), k) + 1))
    score = dcg / ideal if ideal else 0.0
    return score, f"nDCG@{k} {score:.3f}"


BUILTIN: dict[str, Callable[[Params], Run]] = {
    "equals": equals,
    "contains": contains,
    "icontains": lambda p: contains(p, fold=True),
    "contains-any": lambda p: contains_some(p, every=False),
    "contains-all": lambda p: contains_some(p, every=True),
    "regex": regex,
    "starts-with": starts_with,
    "levenshtein": levenshtein,
    "similar": similar,
    "is-json": is_json,
    "json-schema": json_schema,
    "latency": latency,
    "cost": cost,
    "finish-reason": finish_reason,
    "refusal": phrases(REFUSAL, "a refusal"),
    "says-dont-know": phrases(DONT_KNOW, "an 'I don't know'"),
    "citations": citations,
    "citations-valid": citations,  # the name evals have used
    "schema": schema_valid,
    "recall@k": ranking(_recall),
    "mrr": ranking(_mrr),
    "ndcg@k": ranking(_ndcg),
}
