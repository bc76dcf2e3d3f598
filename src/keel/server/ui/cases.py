"""A trace made into an eval case from the dashboard: the expected answer (if given) is kept as a
correction on the run, as feedback, so ``keel eval promote`` adds the case to its suite like any
other; an admin may append it to the suite file there and then (redacted, de-duplicated, once)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from keel.errors import ConfigError, Forbidden, InvalidRequest, KeelError
from keel.evals.promote import Candidate, append_cases, find_candidates, plan, record
from keel.evals.suite import Suite, load_suite
from keel.store.keys import Caller

if TYPE_CHECKING:
    from keel.server.ui import UI


def suites_for(root: Path, feature: str | None) -> list[str]:
    """The project's suites that evaluate ``feature``."""
    folder = root / "evals"
    if feature is None or not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            if load_suite(path).spec.feature == feature:
                out.append(path.stem)
        except KeelError:
            continue  # a suite that does not parse is the CLI's to report
    return out


def make_case(ui: UI, request: Request, trace_id: str, tenant: str | None, form: dict[str, Any]) -> str:
    """Record the run as an eval case candidate; with ``now`` (admins), append it to the suite."""
    caller: Caller = request.state.caller
    rec = ui.store.traces.get(trace_id, tenant=tenant)
    if rec is None or rec.operation != "feature" or rec.feature is None:
        raise InvalidRequest("only a feature run can become an eval case")
    name = str(form.get("suite") or "")
    root = ui.settings.project_root
    if name not in suites_for(root, rec.feature):
        raise InvalidRequest(f"'{name[:80]}' is not a suite of feature {rec.feature} in {root / 'evals'}")
    expected = str(form.get("expected") or "").strip()[:20_000] or None
    owner = rec.tenant or caller.tenant
    ui.store.feedback.add(
        rec.id,
        "eval_case",
        None if expected else False,
        tenant=owner,
        correction=expected,
        comment="from the dashboard",
    )
    if form.get("now") != "yes":
        return f"Kept as a case for {name}: `keel eval promote {rec.feature} --suite {name}` adds it."
    if not caller.admin:
        raise Forbidden("writing the suite file takes an admin key; the case is kept for `keel eval promote`")
    suite = load_suite(root / "evals" / f"{name}.yaml")
    found, uncaptured = find_candidates(
        ui.store, rec.feature, since=rec.ts - 1, scores=ui.settings.feedback, tenant=owner
    )
    mine = [c for c in found if c.trace_id == rec.id]
    if not mine:
        raise InvalidRequest("this run kept no inputs (tracing.capture: off), so it cannot become a case")
    return _append(ui, suite, mine, uncaptured, owner)


def _append(ui: UI, suite: Suite, candidates: list[Candidate], uncaptured: int, tenant: str) -> str:
    chosen = plan(ui.store, suite, candidates, uncaptured, tenant)
    if not chosen.added:
        return f"{suite.name} has this case already (or the same inputs)."
    try:
        append_cases(suite.path, chosen.added)
    except OSError as exc:
        raise ConfigError(f"cannot write {suite.path}: {exc.strerror}; use `keel eval promote` instead") from None
    record(ui.store, suite, chosen.added, tenant)
    return f"Added case {chosen.added[0].case_id} to {suite.path.name}."
