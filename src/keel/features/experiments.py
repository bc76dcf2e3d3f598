"""A/B experiments between prompt versions and/or models.

An experiment splits one feature's traffic between arms by weight. Assignment is sticky: hash
(experiment, user) to a point in [0, 1) and pick the arm whose share covers it, so a user always
lands in the same arm while the split holds. Runs without a user are not enrolled (they serve the
label as usual). Every feature run in an experiment is traced with its experiment and arm; the report
reads those traces and the feedback attached to them, and says plainly when there is no significant
difference yet. Stopping can promote the winning arm's prompt version to a label in the same step.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson

from keel.errors import UserError
from keel.features.prompts import DEFAULT_LABEL, PromptRegistry
from keel.features.spec import load_feature
from keel.stats import Interval, bootstrap, bootstrap_difference, percentile, rate_difference, wilson
from keel.store import Store

MIN_RUNS = 10  # per arm, before the report claims any difference
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    weight: float = 1.0
    version: int | None = None  # a prompt version; None serves the label as usual
    model: str | None = None  # a model alias; None keeps the feature's model


@dataclass(frozen=True, slots=True)
class Experiment:
    tenant: str
    name: str
    feature: str
    arms: tuple[Arm, ...]
    status: str = "running"
    started: float = 0.0
    stopped: float | None = None
    winner: str | None = None

    def arm_for(self, user: str) -> Arm:
        chosen = assign(self.name, user, {a.name: a.weight for a in self.arms})
        return next(a for a in self.arms if a.name == chosen)


def parse_arm(text: str) -> Arm:
    """``NAME[:key=value,…]`` with keys ``version``, ``model``, ``weight`` — e.g. ``b:version=7,weight=20``."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if not _NAME.match(name):
        raise UserError(f"arm '{text}': the name must be letters, digits, '-', '_' or '.' (e.g. control)")
    values: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, raw = pair.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not raw:
            raise UserError(f"arm '{text}': '{pair}' is not key=value")
        try:
            if key == "version":
                values[key] = int(raw.removeprefix("v"))
            elif key == "weight":
                values[key] = float(raw)
            elif key == "model":
                values[key] = raw
            else:
                raise UserError(f"arm '{text}': unknown key '{key}' (use version, model, weight)")
        except ValueError:
            raise UserError(f"arm '{text}': {key} must be a number, not '{raw}'") from None
    arm = Arm(name, **values)
    if not 0 < arm.weight <= 1_000_000:
        raise UserError(f"arm '{name}': weight must be > 0 (it is a share of the traffic), not {arm.weight}")
    return arm


def parse_arms(texts: list[str]) -> list[Arm]:
    """Arms from ``--arm`` values. When every arm gives a weight, the weights are shares on any scale;
    when only some do, theirs are percentages and the arms without one share the rest equally
    (``--arm control --arm brief:version=7,weight=20`` is 80/20, not 1 against 20); none: equal."""
    arms = [parse_arm(t) for t in texts]
    given = [("weight=" in t.partition(":")[2]) for t in texts]
    if all(given) or not any(given):
        return arms
    named = sum(a.weight for a, g in zip(arms, given, strict=True) if g)
    if named >= 100:
        raise UserError(
            f"the weights given add up to {named:g}; with arms that give none, weights are percentages of the "
            "traffic and must leave some for them (or give every arm a weight)"
        )
    rest = (100 - named) / (len(arms) - sum(given))
    return [a if g else replace(a, weight=rest) for a, g in zip(arms, given, strict=True)]


class Experiments:
    """A tenant's experiments in the store: one running experiment per feature at a time."""

    def __init__(self, store: Store, tenant: str = "default") -> None:
        self.store = store
        self.repo = store.experiments
        self.tenant = tenant

    def start(self, name: str, feature: str, arms: list[Arm], registry: PromptRegistry | None = None) -> Experiment:
        if not _NAME.match(name):
            raise UserError(f"'{name}' is not an experiment name: letters, digits, '-', '_', '.'")
        if len(arms) < 2:
            raise UserError("an experiment needs at least two arms (e.g. --arm control --arm b:version=7)")
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise UserError(f"arm names must differ: {names}")
        if all(a.version is None and a.model is None for a in arms[1:]):
            raise UserError("every arm serves the same thing: give an arm a prompt version or a model")
        if registry is not None:
            for arm in arms:
                if arm.version is not None:
                    registry.source(feature_prompt(registry, feature), arm.version)  # raises if unknown
        if self.get(name, missing_ok=True) is not None:
            raise UserError(f"experiment '{name}' already exists; pick another name")
        experiment = Experiment(self.tenant, name, feature, tuple(arms), "running", time.time())
        arms_json = orjson.dumps([asdict(a) for a in arms]).decode()
        if not self.repo.insert(self.tenant, name, feature, arms_json, experiment.started):
            other = self.running(feature)
            raise UserError(
                f"feature '{feature}' already has a running experiment '{other.name if other else '?'}'; stop it first"
            )
        return experiment

    @staticmethod
    def _from_row(row: dict[str, Any]) -> Experiment:
        arms = tuple(Arm(**a) for a in orjson.loads(row["arms"]))
        return Experiment(
            row["tenant"],
            row["name"],
            row["feature"],
            arms,
            row["status"],
            row["started"],
            row["stopped"],
            row["winner"],
        )

    def get(self, name: str, *, missing_ok: bool = False) -> Experiment | None:
        row = self.repo.get(self.tenant, name)
        if row is None:
            if missing_ok:
                return None
            known = [r["name"] for r in self.repo.find(self.tenant, limit=10)]
            raise UserError(f"no experiment '{name}' (experiments: {', '.join(known) or 'none'})")
        return self._from_row(row)

    def running(self, feature: str) -> Experiment | None:
        row = self.repo.running(self.tenant, feature)
        return self._from_row(row) if row is not None else None

    def list(self) -> list[Experiment]:
        return [self._from_row(r) for r in self.repo.find(self.tenant)]

    def stop(
        self,
        name: str,
        *,
        promote: str | None = None,
        label: str = DEFAULT_LABEL,
        registry: PromptRegistry | None = None,
    ) -> tuple[Experiment, str]:
        """Stop ``name``; ``promote`` an arm (or ``winner``: the report's significant winner) by moving
        ``label`` to its prompt version. Returns the experiment and what was done, in words."""
        experiment = self.get(name)
        assert experiment is not None
        if experiment.status != "running":
            raise UserError(f"experiment '{name}' is already stopped")
        done = "stopped; nothing promoted"
        winner: str | None = None
        if promote is not None:
            if promote == "winner":
                result = report(self.store, experiment)
                if result.winner is None:
                    raise UserError(
                        f"experiment '{name}' has no significant winner ({result.verdict}); "
                        "promote an arm by name to choose one anyway, or stop without --promote"
                    )
                promote = result.winner
            arm = next((a for a in experiment.arms if a.name == promote), None)
            if arm is None:
                raise UserError(
                    f"experiment '{name}' has no arm '{promote}' (arms: {[a.name for a in experiment.arms]})"
                )
            winner = arm.name
            parts = []
            if arm.version is not None:
                if registry is None:
                    raise UserError("promoting a prompt version needs the prompt registry")
                prompt = feature_prompt(registry, experiment.feature)
                registry.set_label(prompt, label, arm.version, reason=f"experiment {name}: arm {arm.name} promoted")
                parts.append(f"'{label}' of prompt '{prompt}' → v{arm.version}")
            if arm.model is not None:
                parts.append(f"set `model: {arm.model}` in features/{experiment.feature}.yaml to keep its model")
            done = f"arm '{arm.name}' promoted: " + ("; ".join(parts) or "it is the control; nothing to move")
        self.repo.stop(self.tenant, name, winner, done)
        stopped = self.get(name)
        assert stopped is not None
        return stopped, done


def feature_prompt(registry: PromptRegistry, feature: str) -> str:
    """The prompt a feature serves (its spec lives next to the prompts folder)."""
    return load_feature(registry.directory.parent, feature).prompt


# -- the report ----------------------------------------------------------------------------------


@dataclass(slots=True)
class ArmStats:
    arm: Arm
    runs: int = 0
    errors: int = 0
    error_rate: Interval | None = None
    cost_per_call: Interval | None = None
    unpriced: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    feedback_n: int = 0
    feedback: Interval | None = None
    eval_score: Interval | None = None  # from eval runs per arm, when they are recorded
    latencies: list[float] = field(default_factory=list, repr=False)
    costs: list[float] = field(default_factory=list, repr=False)
    scores: list[float] = field(default_factory=list, repr=False)


@dataclass(frozen=True, slots=True)
class Comparison:
    arm: str
    metric: str
    difference: Interval  # treatment − control
    better: bool | None  # None: no significant difference


@dataclass(slots=True)
class Report:
    experiment: Experiment
    arms: list[ArmStats]
    comparisons: list[Comparison]
    feedback_name: str | None
    verdict: str
    winner: str | None


LOWER_IS_BETTER = {"error rate": True, "cost per call": True, "latency p50": True, "feedback": False}


def report(store: Store, experiment: Experiment) -> Report:
    stats = {a.name: ArmStats(a) for a in experiment.arms}
    rows = store.traces.experiment_runs(experiment.name, tenant=experiment.tenant)
    for row in rows:
        arm = stats.get(row["arm"])
        if arm is None:
            continue
        arm.runs += 1
        if row["status"] != "ok":
            arm.errors += 1
            continue
        if row["latency_ms"] is not None:
            arm.latencies.append(float(row["latency_ms"]))
        if row["cost_usd"] is None:
            arm.unpriced += 1
        else:
            arm.costs.append(float(row["cost_usd"]))
    feedback = store.feedback.on_experiment(experiment.name, tenant=experiment.tenant)
    names = [r["name"] for r in feedback]
    feedback_name = max(set(names), key=names.count) if names else None
    for row in feedback:
        if row["name"] == feedback_name and row["arm"] in stats:
            stats[row["arm"]].scores.append(float(row["value"]))
    seed = experiment.name
    for arm in stats.values():
        arm.error_rate = wilson(arm.errors, arm.runs)
        arm.cost_per_call = bootstrap(arm.costs, seed=seed)
        arm.p50_ms, arm.p95_ms = percentile(arm.latencies, 50), percentile(arm.latencies, 95)
        arm.feedback_n = len(arm.scores)
        arm.feedback = bootstrap(arm.scores, seed=seed)
    ordered = [stats[a.name] for a in experiment.arms]
    comparisons = _compare(ordered, seed)
    verdict, winner = _verdict(ordered, comparisons, feedback_name)
    return Report(experiment, ordered, comparisons, feedback_name, verdict, winner)


def _compare(arms: list[ArmStats], seed: str) -> list[Comparison]:
    control, out = arms[0], []
    for arm in arms[1:]:
        candidates: dict[str, Interval | None] = {
            "error rate": rate_difference(control.errors, control.runs, arm.errors, arm.runs),
            "cost per call": bootstrap_difference(control.costs, arm.costs, seed=seed),
            "latency p50": bootstrap_difference(control.latencies, arm.latencies, stat="median", seed=seed),
            "feedback": bootstrap_difference(control.scores, arm.scores, seed=seed),
        }
        enough = min(control.runs, arm.runs) >= MIN_RUNS
        for metric, diff in candidates.items():
            if diff is None:
                continue
            better = None
            if enough and diff.excludes_zero():
                better = (diff.value < 0) == LOWER_IS_BETTER[metric]
            out.append(Comparison(arm.arm.name, metric, diff, better))
    return out


def _verdict(arms: list[ArmStats], comparisons: list[Comparison], feedback_name: str | None) -> tuple[str, str | None]:
    fewest = min(a.runs for a in arms)
    if fewest < MIN_RUNS:
        return f"too few runs yet to compare (the smallest arm has {fewest}; need ≥ {MIN_RUNS} per arm)", None
    significant = [c for c in comparisons if c.better is not None]
    if not significant:
        return "no significant difference yet", None
    primary = "feedback" if feedback_name and all(a.feedback_n for a in arms) else "error rate"
    said = [
        f"{c.arm} is {'better' if c.better else 'worse'} than {arms[0].arm.name} on {c.metric} ({c.difference})"
        for c in significant
    ]
    on_primary = [c for c in significant if c.metric == primary]
    worse_errors = {c.arm for c in significant if c.metric == "error rate" and c.better is False}
    winners = [c for c in on_primary if c.better and c.arm not in worse_errors]
    if winners:
        direction = -1 if LOWER_IS_BETTER[primary] else 1
        return "; ".join(said), max(winners, key=lambda c: c.difference.value * direction).arm
    if on_primary and all(c.better is False for c in on_primary) and len(on_primary) == len(arms) - 1:
        return "; ".join(said), arms[0].arm.name
    return "; ".join(said) + f" — no significant winner on {primary} yet", None
