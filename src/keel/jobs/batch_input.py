"""A batch's input: its JSONL lines read into requests (and the lines that cannot run, with their
numbers), its completion window, and the worst case its lines may cost — what the Batch API
checks when a batch is created, and what the runner reads again on every attempt."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from keel.errors import InvalidRequest, PayloadTooLarge
from keel.gateway.admission import Admission
from keel.text import upper_bound_tokens

ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
MAX_CUSTOM_ID = 512


def window_seconds(window: Any) -> float:
    """``24h`` (the OpenAI value), or any whole number of hours from 1 to 168."""
    m = re.fullmatch(r"(\d{1,3})h", window) if isinstance(window, str) else None
    if m is None or not 1 <= int(m.group(1)) <= 168:
        raise InvalidRequest(
            "completion_window is a number of hours from 1h to 168h, such as 24h", param="completion_window"
        )
    return int(m.group(1)) * 3600.0


@dataclass(frozen=True, slots=True)
class Request:
    line: int
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Broken:
    line: int
    custom_id: str | None
    message: str


def parse_input(content: bytes, endpoint: str, max_lines: int) -> tuple[list[Request], list[Broken]]:
    """A batch input's lines: the requests to run, and the lines that cannot run (they go to the
    error file with their line number; the rest runs). More than ``max_lines`` lines is a 413;
    two lines sharing a ``custom_id`` refuse the whole batch, naming the lines."""
    raw = content.split(b"\n")
    while raw and not raw[-1].strip():
        raw.pop()
    if len(raw) > max_lines:
        raise PayloadTooLarge(
            f"the input has {len(raw):,} lines; a batch takes at most {max_lines:,} (batches.max_lines): split it"
        )
    requests: list[Request] = []
    broken: list[Broken] = []
    seen: dict[str, list[int]] = {}
    for n, text in enumerate(raw, 1):
        custom_id, problem, body = _read_line(text, endpoint)
        if custom_id is not None:
            seen.setdefault(custom_id, []).append(n)
        if problem is not None:
            broken.append(Broken(n, custom_id, problem))
        else:
            assert custom_id is not None and body is not None
            requests.append(Request(n, custom_id, body))
    twice = {cid: lines for cid, lines in seen.items() if len(lines) > 1}
    if twice:
        said = "; ".join(f"'{cid[:60]}' on lines {', '.join(map(str, ls[:5]))}" for cid, ls in list(twice.items())[:5])
        raise InvalidRequest(
            f"{len(twice)} custom_id(s) appear on more than one line ({said}): each line needs its own",
            param="input_file_id",
        )
    if not requests:
        raise InvalidRequest(
            f"the input has no line that can run ({len(broken)} broken: "
            + (broken[0].message if broken else "empty file")
            + ")",
            param="input_file_id",
        )
    return requests, broken


def _read_line(text: bytes, endpoint: str) -> tuple[str | None, str | None, dict[str, Any] | None]:
    if not text.strip():
        return None, "an empty line", None
    try:
        item = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON: {exc}", None
    if not isinstance(item, dict):
        return None, "a line is a JSON object with custom_id, method, url and body", None
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not 0 < len(custom_id) <= MAX_CUSTOM_ID:
        return None, f"custom_id must be a string of 1 to {MAX_CUSTOM_ID} characters", None
    if item.get("method", "POST") != "POST":
        return custom_id, "method must be POST", None
    url = item.get("url")
    if url != endpoint:
        return custom_id, f"url {str(url)[:80]!r} is not this batch's endpoint {endpoint}", None
    body = item.get("body")
    if not isinstance(body, dict):
        return custom_id, "body must be a JSON object (the request to the endpoint)", None
    unknown = sorted(set(item) - {"custom_id", "method", "url", "body"})
    if unknown:
        return custom_id, f"unknown field(s) {', '.join(unknown)[:80]}", None
    return custom_id, None, body


def line_worst(admission: Admission, endpoint: str, body: dict[str, Any]) -> tuple[str, int, int]:
    """A line's model, and its worst case (nano-USD at the batch discount, and tokens)."""
    model = str(body.get("model") or "")
    if endpoint != "/v1/chat/completions":
        tokens = upper_bound_tokens([{"role": "user", "content": orjson.dumps(body.get("input")).decode()}])
        return model, admission.worst_case(model, tokens, 0, batch=True), tokens
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    tokens_in = upper_bound_tokens([m for m in messages if isinstance(m, dict)])  # type: ignore[union-attr]
    out = admission.max_output(model, body.get("max_tokens") or body.get("max_completion_tokens"))
    return model, admission.worst_case(model, tokens_in, out, batch=True), tokens_in + out


def worst_by_model(admission: Admission, endpoint: str, requests: list[Request]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for r in requests:
        model, nusd, tokens = line_worst(admission, endpoint, r.body)
        was = out.get(model, (0, 0))
        out[model] = (was[0] + nusd, was[1] + tokens)
    return out
