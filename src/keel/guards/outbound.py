"""Every text a chat request sends to a provider, found in one walk, so the data policy sees all of
it: message contents of every shape (strings and text parts), tool-call and function-call
arguments, tool descriptions, and every string of the other forwarded fields (``user``,
``metadata``, unknown fields passed through) — not the structured-output schema, not image or audio
payloads. ``rewrite`` puts changed texts back copy-on-write: a template's cached parameters or the
caller's objects are never mutated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Path = tuple[str | int, ...]
#: Payloads that are not text a person wrote (and may be megabytes): never walked.
OPAQUE = frozenset({"image_url", "input_audio", "file", "response_format"})


@dataclass(frozen=True, slots=True)
class Outbound:
    where: str  # "messages" or "params"
    path: Path
    text: str
    written_by_user: bool  # names are looked for in what people wrote


def _strings(value: Any, path: Path, only: str | None = None) -> Iterator[tuple[Path, str]]:
    """Strings inside ``value`` (dict values, list items); ``only``: under keys of that name only."""
    if isinstance(value, str):
        if only is None or (path and path[-1] == only):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in OPAQUE and key != "type":
                yield from _strings(item, (*path, key), only)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i), only)


def outbound_texts(messages: list[Any], params: dict[str, Any]) -> list[Outbound]:
    out: list[Outbound] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            continue
        user = m.get("role") == "user"
        for path, text in _strings(m.get("content"), (i, "content")):
            out.append(Outbound("messages", path, text, user))
        for key in ("tool_calls", "function_call"):
            for path, text in _strings(m.get(key), (i, key), only="arguments"):
                out.append(Outbound("messages", path, text, False))
    for key, value in params.items():
        if key in OPAQUE:
            continue
        only = "description" if key in ("tools", "functions") else None  # a tool's schema is not text
        out.extend(Outbound("params", path, text, False) for path, text in _strings(value, (key,), only))
    return out


def rewrite(root: Any, path: Path, text: str) -> Any:
    """``root`` with the string at ``path`` replaced, copying only the containers along the way."""
    if not path:
        return text
    head, rest = path[0], path[1:]
    if isinstance(root, list):
        copy = list(root)
        copy[int(head)] = rewrite(root[int(head)], rest, text)
        return copy
    return {**root, head: rewrite(root[head], rest, text)}
