"""Production failures become tests: feature runs whose feedback carries a correction or a low score
are turned into eval cases and appended to the suite — redacted (whatever the trace capture policy
was), de-duplicated against the suite and each other, each trace promoted once.

A case from a correction expects the corrected answer (``similar`` to it); a case from a low score
alone must at least not repeat the answer people disliked (``not-similar`` to it, at 0.95), and is
tagged ``needs-expected`` so someone writes the right answer in.

``--from-reviews`` reads the review queue's decisions instead (feedback ``review`` on the trace,
keel.review): an approved answer and an edit become ``expected`` plus ``similar``, a reject becomes
``not-similar`` to the rejected answer — through the same redaction, de-duplication and once-per-trace.
``--from-monitors`` reads the live runs a monitor's checks failed (keel.monitor): each becomes a
``needs-expected`` case that must not repeat the failing answer, tagged with the checks that failed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from keel.config.settings import FeedbackSettings
from keel.config.yamlfile import read_yaml
from keel.errors import ConfigError, UserError
from keel.evals.suite import Suite, load_suite
from keel.store import Store
from keel.store.feedback import Feedback, is_low
from keel.store.keys import DEFAULT_TENANT
from keel.tracing.redact import redact

_FOLD = re.compile(r"[\W_]+")
REVIEW = "review"  # the feedback a review decision leaves on its trace (keel.store.reviews)
PREFIX = {"review": "rv", "feedback": "fb", "monitor": "mn"}


@dataclass(slots=True)
class Candidate:
    trace_id: str
    inputs: dict[str, Any]
    answer: str
    correction: str | None = None
    why: list[str] = field(default_factory=list)
    source: str = "feedback"  # or "review", "monitor"

    @property
    def case_id(self) -> str:
        return f"{PREFIX.get(self.source, 'fb')}-{self.trace_id[:10]}"

    def case(self) -> dict[str, Any]:
        case: dict[str, Any] = {"id": self.case_id, "inputs": self.inputs}
        tag = f"from-{self.source}"
        if self.correction is not None:
            case["expected"] = self.correction
            case["tags"] = [tag]
            case["checks"] = [{"type": "similar", "threshold": 0.8}]
        else:
            case["tags"] = [tag, "needs-expected"]
            case["checks"] = [{"type": "not-similar", "value": self.answer, "threshold": 0.95}]
        return case


@dataclass(slots=True)
class Promotion:
    added: list[Candidate]
    duplicates: int = 0
    already: int = 0
    uncaptured: int = 0


def fingerprint(inputs: dict[str, Any]) -> str:
    """Inputs compared as people read them: case, spacing and punctuation folded."""
    text = " ".join(f"{k}={v}" for k, v in sorted(inputs.items()) if v not in (None, ""))
    return _FOLD.sub(" ", text.casefold()).strip()


def find_candidates(
    store: Store,
    feature: str,
    *,
    since: float | None,
    scores: FeedbackSettings,
    below: float | None = None,
    tenant: str = DEFAULT_TENANT,
    reviews: bool = False,
) -> tuple[list[Candidate], int]:
    """Feature runs with a correction or a low score — or, with ``reviews``, a reviewer's decision —
    newest first; and how many had no captured inputs (tracing.capture: off)."""
    rows = store.feedback.on_feature_runs(feature, since=since, tenant=tenant)
    found: dict[str, Candidate] = {}
    uncaptured: set[str] = set()
    for row in rows:
        fb: Feedback = row["feedback"]
        if reviews:
            if fb.name != REVIEW or fb.label not in ("approve", "edit", "reject"):
                continue
        elif fb.correction is None and not is_low(fb, scores.scores.get(fb.name), below):
            continue
        run_id = row["run_id"]
        inputs = _json(row["request"])
        if not isinstance(inputs, dict) or not inputs:
            uncaptured.add(run_id)
            continue
        candidate = found.get(run_id)
        if candidate is None:
            answer = _json(row["response"])
            source = "review" if reviews else "feedback"
            candidate = found[run_id] = Candidate(run_id, redact(inputs), redact(str(answer or "")), source=source)
        if fb.correction is not None and candidate.correction is None:
            candidate.correction = redact(fb.correction.strip())
        shown = fb.label if fb.value is None or fb.label in ("true", "false") else f"{fb.value:g}"
        candidate.why.append(f"{fb.name}={shown}" if shown is not None else f"{fb.name}: correction")
    return list(found.values()), len(uncaptured)


def monitor_candidates(
    store: Store, feature: str, *, since: float | None, tenant: str = DEFAULT_TENANT
) -> tuple[list[Candidate], int]:
    """Live runs whose monitor checks failed, newest first (the traces' captured inputs and answers);
    and how many had no captured inputs."""
    failed: dict[str, list[str]] = {}
    for score in store.monitors.scores(tenant, feature, since or 0.0, time.time() + 1, status="ok"):
        if score.passed is False:
            failed.setdefault(score.trace_id, []).append(f"monitor {score.monitor}: {score.check} failed")
    found, uncaptured = [], 0
    for trace_id in sorted(failed, reverse=True):
        record = store.traces.get(trace_id, tenant=tenant)
        inputs = record.request if record is not None else None
        if not isinstance(inputs, dict) or not inputs:
            uncaptured += 1
            continue
        answer = record.response if record is not None else None
        text = answer if isinstance(answer, str) else orjson.dumps(answer).decode() if answer is not None else ""
        found.append(Candidate(trace_id, redact(inputs), redact(text), why=failed[trace_id], source="monitor"))
    return found, uncaptured


def _json(raw: Any) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def plan(
    store: Store, suite: Suite, candidates: list[Candidate], uncaptured: int, tenant: str = DEFAULT_TENANT
) -> Promotion:
    """Which candidates are new: not promoted before, not the same inputs as a case or each other."""
    done = store.evals.promoted(tenant, suite.name)
    seen = {fingerprint({**suite.spec.defaults, **c.inputs}) for c in suite.spec.cases}
    ids = {c.id for c in suite.spec.cases}
    out = Promotion([], uncaptured=uncaptured)
    for candidate in candidates:
        if candidate.trace_id in done or candidate.case_id in ids:
            out.already += 1
            continue
        key = fingerprint({**suite.spec.defaults, **candidate.inputs})
        if key in seen:
            out.duplicates += 1
            continue
        seen.add(key)
        out.added.append(candidate)
    return out


def append_cases(path: Path, candidates: list[Candidate]) -> None:
    """Insert the cases at the end of the suite's ``cases:`` list, keeping the file's comments and
    layout; the result must load as a suite, or the file is left as it was."""
    original = path.read_text(encoding="utf-8")
    node = yaml.compose(original)
    cases = next((v for k, v in node.value if k.value == "cases"), None) if isinstance(node, yaml.MappingNode) else None
    if not isinstance(cases, yaml.SequenceNode) or cases.flow_style or not cases.value:
        raise UserError(f"{path}: 'cases' must be a block list (- id: …) to append to; use --dry-run and paste")
    indent = cases.start_mark.column
    at = cases.end_mark.index
    block = "".join(_render(c, indent) for c in candidates)
    head = original[:at]
    if not head.endswith("\n"):
        head += "\n"
    path.write_text(head + block + original[at:], encoding="utf-8")
    try:
        load_suite(path)
        read_yaml(path)
    except (ConfigError, UserError) as exc:
        path.write_text(original, encoding="utf-8")
        raise UserError(f"{path}: the promoted cases did not load ({exc.message}); the file is unchanged") from None


def _render(candidate: Candidate, indent: int) -> str:
    text = yaml.safe_dump([candidate.case()], sort_keys=False, allow_unicode=True, width=110)
    pad = " " * indent
    note = f"{pad}# from trace {candidate.trace_id} ({', '.join(candidate.why)})\n"
    return note + "".join(f"{pad}{line}\n" for line in text.splitlines())


def record(store: Store, suite: Suite, candidates: list[Candidate], tenant: str = DEFAULT_TENANT) -> None:
    store.evals.mark_promoted(tenant, suite.name, [(c.trace_id, c.case_id) for c in candidates])
