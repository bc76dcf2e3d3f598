from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from keel.errors import UserError
from keel.features.experiments import Arm, Experiments, assign, parse_arm, report
from keel.features.prompts import PromptRegistry
from keel.store import connect, db_path
from keel.testing import Reply
from keel.types import Usage

V2 = """---
description: Answer a support question, more briefly
params: {max_tokens: 200}
inputs:
  question: {type: str}
---
[system]
You are Acme support. Be brief.
[user]
{{ question }}
"""


def test_assignment_is_sticky_and_follows_the_weights() -> None:
    arms = {"a": 80.0, "b": 20.0}
    first = {u: assign("exp", f"user-{u}", arms) for u in range(2000)}
    assert first == {u: assign("exp", f"user-{u}", arms) for u in range(2000)}  # sticky
    share = Counter(first.values())["a"] / 2000
    assert 0.77 < share < 0.83
    assert assign("other", "user-1", {"a": 1, "b": 1}) in {"a", "b"}
    with pytest.raises(UserError, match="weights must be"):
        assign("exp", "u", {"a": 0, "b": 0})


def test_arms_parse_with_clear_errors() -> None:
    assert parse_arm("b:version=7,model=accurate,weight=20") == Arm("b", 20.0, 7, "accurate")
    assert parse_arm("control") == Arm("control")
    for bad, message in [
        ("b:version=seven", "version must be a number"),
        ("b:colour=red", "unknown key 'colour'"),
        ("b:weight=0", "weight must be > 0"),
        ("b:version", "is not key=value"),
        (":version=2", "the name must be"),
    ]:
        with pytest.raises(UserError, match=message):
            parse_arm(bad)


def test_weights_given_to_some_arms_are_percentages_and_the_rest_share_what_is_left() -> None:
    from keel.features.experiments import assign, parse_arms

    arms = parse_arms(["control", "brief:version=7,weight=20"])  # the README's example: 80/20, not 1 against 20
    assert [(a.name, a.weight) for a in arms] == [("control", 80.0), ("brief", 20.0)]
    shares = [assign("brief", f"user-{i}", {a.name: a.weight for a in arms}) for i in range(4000)]
    assert 0.17 < shares.count("brief") / len(shares) < 0.23
    assert [a.weight for a in parse_arms(["a", "b:weight=10", "c"])] == [45.0, 10.0, 45.0]
    assert [a.weight for a in parse_arms(["a:weight=3", "b:weight=1"])] == [3.0, 1.0]  # all given: any scale
    assert [a.weight for a in parse_arms(["a", "b"])] == [1.0, 1.0]
    with pytest.raises(UserError, match="add up to 120"):
        parse_arms(["a", "b:weight=70", "c:weight=50"])


@pytest.fixture
def two_versions(pipeline, project: Path):  # type: ignore[no-untyped-def]
    pipe, provider, home = pipeline
    registry: PromptRegistry = pipe.registry
    registry.record_file(project / "prompts" / "support.md")
    (project / "prompts" / "support.md").write_text(V2)
    assert registry.record_file(project / "prompts" / "support.md") == 2
    return pipe, provider, home, registry


def test_starting_checks_the_arms(two_versions) -> None:  # type: ignore[no-untyped-def]
    pipe, _, _, registry = two_versions
    experiments = Experiments(pipe.store)
    with pytest.raises(UserError, match="at least two arms"):
        experiments.start("e", "support", [Arm("a")])
    with pytest.raises(UserError, match="same thing"):
        experiments.start("e", "support", [Arm("a"), Arm("b")])
    with pytest.raises(UserError, match="has no version 9"):
        experiments.start("e", "support", [Arm("a"), Arm("b", version=9)], registry)
    experiments.start("e", "support", [Arm("a", version=1), Arm("b", version=2)], registry)
    with pytest.raises(UserError, match="already has a running experiment 'e'"):
        experiments.start("e2", "support", [Arm("a", version=1), Arm("b", version=2)], registry)
    with pytest.raises(UserError, match="already exists"):
        experiments.start("e", "other", [Arm("a", version=1), Arm("b", version=2)])


async def test_an_experiment_end_to_end(two_versions) -> None:  # type: ignore[no-untyped-def]
    pipe, provider, home, registry = two_versions
    experiments = Experiments(pipe.store)
    experiments.start("brief", "support", [Arm("control", version=1), Arm("brief", version=2)], registry)
    # the brief prompt gets slower answers and worse feedback
    provider.responder = lambda req: Reply(
        "Refunds take five business days [1].",
        delay=0.03 if "Be brief" in req.messages[0]["content"] else 0.0,
        usage=Usage(input_tokens=100, output_tokens=20),
    )
    seen: dict[str, tuple[str | None, int]] = {}
    for round_ in range(2):
        for n in range(30):
            result = await pipe.run("support", {"question": "How long do refunds take?"}, user=f"u{n}")
            arm = (result.arm, result.prompt_version)
            assert seen.setdefault(f"u{n}", arm) == arm  # the same user always lands in the same arm
            assert result.experiment == "brief" and result.arm in {"control", "brief"}
            assert result.prompt_version == (1 if result.arm == "control" else 2)
            if round_ == 0:
                conn = connect(db_path(home))
                pipe.service.writer.flush()
                conn.execute(
                    "INSERT INTO feedback(trace_id, name, value, at) VALUES (?, 'helpful', ?, ?)",
                    (result.trace_id, 1.0 if result.arm == "control" else 0.0, time.time()),
                )
    anonymous = await pipe.run("support", {"question": "How long do refunds take?"})
    assert anonymous.arm is None and anonymous.prompt_version == 1  # no user: not enrolled
    pipe.service.writer.flush()
    conn = connect(db_path(home))
    stamped = conn.execute(
        "SELECT arm, prompt_version, count(*) FROM traces WHERE experiment = 'brief' AND operation = 'feature' "
        "GROUP BY arm ORDER BY arm"
    ).fetchall()
    assert {(r[0], r[1]) for r in stamped} == {("brief", 2), ("control", 1)} and sum(r[2] for r in stamped) == 60
    experiment = experiments.get("brief")
    assert experiment is not None
    result = report(pipe.store, experiment)
    by_arm = {a.arm.name: a for a in result.arms}
    assert by_arm["control"].runs + by_arm["brief"].runs == 60
    assert by_arm["brief"].p50_ms is not None and by_arm["control"].p50_ms is not None
    assert by_arm["brief"].p50_ms > by_arm["control"].p50_ms + 20
    assert result.feedback_name == "helpful" and by_arm["control"].feedback is not None
    assert by_arm["control"].feedback.value == 1.0 and by_arm["brief"].feedback_n > 0
    latency = next(c for c in result.comparisons if c.metric == "latency p50")
    assert latency.better is False and latency.difference.excludes_zero()
    assert result.winner == "control" and "brief is worse than control on feedback" in result.verdict
    # stop and promote in one step: production stays on v1 (the control); promoting 'brief' would move it
    stopped, done = experiments.stop("brief", promote="winner", registry=registry)
    assert stopped.status == "stopped" and stopped.winner == "control"
    assert registry.label_version("support", "production") == 1 and "v1" in done
    assert experiments.running("support") is None
    with pytest.raises(UserError, match="already stopped"):
        experiments.stop("brief")


async def test_no_significant_difference_is_said_plainly(two_versions) -> None:  # type: ignore[no-untyped-def]
    pipe, provider, _, registry = two_versions
    experiments = Experiments(pipe.store)
    experiments.start("same", "support", [Arm("a", version=1), Arm("b", version=2)], registry)
    provider.responder = lambda req: Reply("Five days [1].", usage=Usage(input_tokens=100, output_tokens=20))
    for n in range(8):
        await pipe.run("support", {"question": "How long do refunds take?"}, user=f"u{n}")
    pipe.service.writer.flush()
    early = report(pipe.store, experiments.get("same"))  # type: ignore[arg-type]
    assert early.winner is None and "too few runs yet" in early.verdict
    for n in range(8, 60):
        await pipe.run("support", {"question": "How long do refunds take?"}, user=f"u{n}")
    pipe.service.writer.flush()
    result = report(pipe.store, experiments.get("same"))  # type: ignore[arg-type]
    assert result.winner is None
    assert result.verdict.startswith("no significant difference yet") or "no significant winner" in result.verdict
    with pytest.raises(UserError, match="no significant winner"):
        experiments.stop("same", promote="winner", registry=registry)
    _stopped, done = experiments.stop("same", promote="b", registry=registry)
    assert registry.label_version("support", "production") == 2 and "'production' of prompt 'support' → v2" in done
    history = registry.history("support")
    assert history[-1]["reason"] == "experiment same: arm b promoted"
