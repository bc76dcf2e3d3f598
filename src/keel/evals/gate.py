"""The gate: a run judged against the suite's rules and a baseline run, and its changes per metric
with 95% bootstrap intervals, paired by case."""

from __future__ import annotations

from dataclasses import dataclass

from keel.evals.results import EvalRun
from keel.evals.suite import Suite
from keel.stats import bootstrap


@dataclass(frozen=True, slots=True)
class MetricDelta:
    metric: str
    change: float  # this run − the baseline, over the cases both ran
    low: float
    high: float
    cases: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def deltas(run: EvalRun, baseline: EvalRun) -> list[MetricDelta]:
    """Per-metric change with a 95% bootstrap interval, paired by case id (only cases both runs scored)."""
    before = {r.case_id: r for r in baseline.results if r.error is None}
    pairs = [(before[r.case_id], r) for r in run.results if r.error is None and r.case_id in before]
    if not pairs:
        return []
    metrics: dict[str, list[float]] = {
        "pass rate": [float(new.passed) - float(old.passed) for old, new in pairs],
        "mean score": [new.score - old.score for old, new in pairs],
    }
    if all(old.cost_usd is not None and new.cost_usd is not None for old, new in pairs):
        metrics["cost per case"] = [(new.cost_usd or 0.0) - (old.cost_usd or 0.0) for old, new in pairs]
    if all(old.latency_ms is not None and new.latency_ms is not None for old, new in pairs):
        metrics["latency ms"] = [(new.latency_ms or 0.0) - (old.latency_ms or 0.0) for old, new in pairs]
    out = []
    for metric, diffs in metrics.items():
        interval = bootstrap(diffs, seed=f"{run.suite}:{metric}")
        if interval is not None:
            out.append(MetricDelta(metric, interval.value, interval.low, interval.high, len(pairs)))
    return out


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    passed: bool
    detail: str


def apply_gate(suite: Suite, run: EvalRun, baseline: EvalRun | None) -> list[Rule]:
    g, s = suite.spec.gate, run.summary
    rules: list[Rule] = []
    if s.cases == 0:
        return [Rule("not empty", False, "the run has no results")]
    if s.partial:
        rules.append(Rule("complete", False, f"interrupted: {s.cases} of {len(suite.spec.cases)} cases ran"))
    rules.append(Rule("errors", s.errors <= g.max_errors, f"{s.errors} case(s) errored (allowed {g.max_errors})"))
    if g.min_pass_rate is not None:
        rules.append(Rule("pass rate", s.pass_rate >= g.min_pass_rate, f"{s.pass_rate:.1%} (≥ {g.min_pass_rate:.1%})"))
    if g.min_mean_score is not None:
        rules.append(Rule("mean score", s.mean_score >= g.min_mean_score, f"{s.mean_score:.3f} (≥ {g.min_mean_score})"))
    for check, floor in g.min_check_score.items():
        got = s.check_scores.get(check)
        rules.append(
            Rule(f"{check} score", got is not None and got >= floor, f"{got if got is not None else '—'} (≥ {floor})")
        )
    if g.max_p95_latency_ms is not None:
        ok = s.p95_ms is not None and s.p95_ms <= g.max_p95_latency_ms
        rules.append(Rule("p95 latency", ok, f"{s.p95_ms or 0:.0f} ms (≤ {g.max_p95_latency_ms:g})"))
    if baseline is not None:
        b = baseline.summary
        if g.max_pass_rate_drop is not None:
            drop = b.pass_rate - s.pass_rate
            detail = f"{s.pass_rate:.1%} vs {b.pass_rate:.1%} (may drop ≤ {g.max_pass_rate_drop:.1%})"
            rules.append(Rule("pass rate vs baseline", drop <= g.max_pass_rate_drop + 1e-9, detail))
        if g.max_cost_increase is not None and b.cost_usd > 0:
            rise = s.cost_usd / b.cost_usd - 1
            detail = f"{rise:+.1%} (may rise ≤ {g.max_cost_increase:.0%})"
            rules.append(Rule("cost vs baseline", rise <= g.max_cost_increase + 1e-9, detail))
    elif g.max_pass_rate_drop is not None or g.max_cost_increase is not None:
        rules.append(Rule("baseline", True, "no baseline run yet: comparisons skipped (save one with --label main)"))
    return rules


@dataclass(frozen=True, slots=True)
class Outcome:
    """A run judged: the gate's rules and its changes against the baseline."""

    run: EvalRun
    rules: list[Rule]
    deltas: list[MetricDelta]


def compare(outcomes: list[Outcome]) -> list[list[MetricDelta]]:
    """Each run of a matrix against the first, paired by case (the first compares with nothing)."""
    if not outcomes:
        return []
    first = outcomes[0].run
    return [[], *(deltas(o.run, first) for o in outcomes[1:])]
