from __future__ import annotations

from collections import Counter

import pytest

from keel.errors import InvalidRequest, UserError
from keel.features.context import fit
from keel.features.experiments import assign

SYSTEM = {"role": "system", "content": "Be brief."}


def turns(n: int) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x" * 396} for i in range(n)]


def test_fits_untouched_when_it_fits() -> None:
    messages = [SYSTEM, *turns(3)]
    fitted = fit(messages, window=4096, max_output=256)
    assert fitted.messages == messages and fitted.dropped == 0 and fitted.estimated


def test_fail_policy_names_the_numbers() -> None:
    with pytest.raises(InvalidRequest, match=r"exceeds the 1000-token window") as info:
        fit([SYSTEM, *turns(21)], window=1000, max_output=200)
    assert info.value.param == "messages" and info.value.code == "context_length_exceeded"
    assert "truncate_history" in info.value.message  # many turns: dropping the oldest helps


def test_one_long_message_is_told_to_summarise_not_to_drop_turns() -> None:
    with pytest.raises(InvalidRequest) as info:
        fit([SYSTEM, {"role": "user", "content": "x " * 5000}], window=1000, max_output=200)
    assert "map_reduce" in info.value.message and "truncate_history" not in info.value.message


def test_truncate_history_keeps_system_and_the_newest_turns() -> None:
    messages = [SYSTEM, *turns(21)]
    fitted = fit(messages, window=1000, max_output=200, policy="truncate_history")
    assert fitted.messages[0] == SYSTEM and fitted.messages[-1] == messages[-1]
    assert fitted.dropped > 0 and fitted.tokens <= 800
    assert [m["content"][:7] for m in fitted.messages[1:]] == [
        m["content"][:7] for m in messages[-len(fitted.messages) + 1 :]
    ]


def test_the_latest_turn_is_never_cut_silently() -> None:
    huge = [SYSTEM, {"role": "user", "content": "y" * 10_000}]
    with pytest.raises(InvalidRequest, match="even the latest message does not fit"):
        fit(huge, window=1000, max_output=200, policy="truncate_history")


def test_an_exact_counter_is_used_when_given() -> None:
    fitted = fit([SYSTEM, *turns(2)], window=100, max_output=10, count=lambda text: len(text.split()))
    assert not fitted.estimated and fitted.tokens < 100


def test_assignment_is_sticky_and_follows_the_split() -> None:
    arms = {"v6": 80, "v7": 20}
    assert all(assign("exp", f"user{i}", arms) == assign("exp", f"user{i}", arms) for i in range(200))
    counts = Counter(assign("exp", f"user{i}", arms) for i in range(20_000))
    assert abs(counts["v7"] / 20_000 - 0.20) < 0.015
    users = [f"user{i}" for i in range(200)]
    assert any(assign("exp2", u, arms) != assign("exp", u, arms) for u in users)  # experiments are independent
    assert {assign("exp", f"u{i}", {"a": 1, "off": 0}) for i in range(500)} == {"a"}


@pytest.mark.parametrize("arms", [{}, {"a": 0, "b": 0}, {"a": -1, "b": 2}])
def test_bad_splits_are_refused(arms: dict[str, float]) -> None:
    with pytest.raises(UserError):
        assign("exp", "u", arms)
