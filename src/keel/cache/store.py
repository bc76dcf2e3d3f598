"""Cached feature answers in the store: looked up by exact key, or as the nearest neighbour of a query
inside its scope (tenant, feature, prompt version, model, retrieval index version and the other
inputs) — never across scopes, so a prompt or index change is a miss by construction; entries expire
(``ttl_s``). An entry that no longer deserialises is dropped and counts as a miss.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from keel.cache.gate import GateVerdict, compare
from keel.store.answers import AnswerStore

log = logging.getLogger("keel.cache")
MAX_NEIGHBOURS = 5000  # newest entries of a scope the semantic lookup compares against


def normalise(value: Any) -> Any:
    """Unicode NFC and collapsed whitespace in every string; dict keys sorted by the hash below."""
    if isinstance(value, str):
        return " ".join(unicodedata.normalize("NFC", value).split())
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def digest(*parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(normalise(list(parts)), option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    text: str
    value: dict[str, Any]
    trace_id: str | None
    created: float


@dataclass(frozen=True, slots=True)
class Near:
    entry: Entry
    cosine: float
    gate: GateVerdict


class AnswerCache:
    def __init__(self, store: AnswerStore) -> None:
        self.store = store
        self._scopes: dict[str, tuple[tuple[Any, ...], list[str], Any]] = {}

    def _entry(self, row: dict[str, Any]) -> Entry | None:
        try:
            value = orjson.loads(row["value"])
            if not isinstance(value, dict) or not isinstance(value.get("answer"), str):
                raise ValueError("not a cached answer")
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            log.warning("cache entry %s no longer deserialises (%s); dropped", row["key"][:12], exc)
            self.store.delete(row["key"])
            return None
        return Entry(row["key"], row["text"], value, row["trace_id"], row["created"])

    def exact(self, key: str) -> Entry | None:
        row = self.store.get(key)
        if row is None:
            return None
        entry = self._entry(row)
        if entry is not None:
            self.store.hit(key)
        return entry

    def _neighbours(self, scope: str) -> tuple[list[str], Any]:
        """The scope's keys and their vectors as one matrix, reloaded only when the scope changed
        (any process's write moves its count or newest timestamp)."""
        stamp = self.store.stamp(scope)
        known = self._scopes.get(scope)
        if known is not None and known[0] == stamp:
            return known[1], known[2]
        rows = self.store.vectors(scope, MAX_NEIGHBOURS)
        keys = [k for k, _ in rows]
        matrix = np.stack([np.frombuffer(v, dtype=np.float32) for _, v in rows]) if rows else None
        if len(self._scopes) > 256:
            self._scopes.clear()
        self._scopes[scope] = (stamp, keys, matrix)
        return keys, matrix

    def nearest(self, scope: str, text: str, vector: Any, threshold: float) -> tuple[Near | None, Near | None]:
        """(the hit, the best candidate the gate refused) — both for the trace."""
        keys, matrix = self._neighbours(scope)
        if matrix is None:
            return None, None
        cosines = matrix @ np.asarray(vector, dtype=np.float32)
        refused: Near | None = None
        for i in np.argsort(-cosines)[:5]:  # the closest few: the gate may refuse the very closest
            cosine = float(cosines[i])
            if cosine < threshold:
                break
            row = self.store.get(keys[i])
            entry = self._entry(row) if row is not None else None
            if entry is None:
                continue
            verdict = compare(text, entry.text)
            if verdict.same:
                self.store.hit(entry.key)
                return Near(entry, cosine, verdict), refused
            refused = refused or Near(entry, cosine, verdict)
        return None, refused

    def put(
        self,
        key: str,
        *,
        scope: str,
        feature: str,
        text: str,
        vector: Any | None,
        value: dict[str, Any],
        trace_id: str | None,
        ttl_s: float,
        tenant: str = "default",
    ) -> None:
        blob = None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()
        self.store.put(
            key,
            tenant=tenant,
            scope=scope,
            feature=feature,
            text=text,
            vector=blob,
            value=orjson.dumps(value).decode(),
            trace_id=trace_id,
            ttl_s=ttl_s,
        )

    def clear(self, feature: str | None = None, *, expired_only: bool = False, tenant: str | None = None) -> int:
        return self.store.clear(tenant=tenant, feature=feature, expired_only=expired_only)

    def stats(self, tenant: str | None = None) -> list[dict[str, Any]]:
        return self.store.stats(tenant=tenant)
