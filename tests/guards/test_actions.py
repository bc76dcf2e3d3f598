"""Critical actions: the model proposes, the rules decide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keel.errors import ConfigError
from keel.features.spec import load_feature
from keel.testing import Reply

SCHEMA = {
    "type": "object",
    "properties": {
        "action": {"enum": ["refund", "answer", "escalate"]},
        "order_id": {"type": "string"},
        "amount": {"type": "number"},
        "text": {"type": "string"},
    },
    "required": ["action"],
}
FEATURE = """\
prompt: extract
model: m
output: {schema: schemas/refund.json, retries: 0}
actions:
  refund:
    when: {action: refund}
    rules:
      - {field: amount, max: 100}
      - {field: amount, max_input: order_total}
      - {field: order_id, matches: "^ord_[0-9]+$"}
    fallback: {action: escalate, text: A person will review this refund.}
"""


@pytest.fixture
def refund(project: Path) -> Path:
    (project / "schemas" / "refund.json").write_text(json.dumps(SCHEMA))
    (project / "prompts" / "extract.md").write_text(
        "---\ninputs:\n  text: {type: str}\n  order_total: {type: float, required: false, default: 0}\n---\n"
        "Extract: {{ text }}"
    )
    (project / "features" / "refund.yaml").write_text(FEATURE)
    return project


@pytest.mark.parametrize(
    ("proposal", "total", "allowed", "reason"),
    [
        ({"action": "refund", "order_id": "ord_123", "amount": 40}, 80, True, "every rule holds"),
        ({"action": "refund", "order_id": "ord_123", "amount": 250}, 500, False, "amount 250 > 100"),
        ({"action": "refund", "order_id": "ord_123", "amount": 60}, 50, False, "amount 60 > input order_total (50)"),
        ({"action": "refund", "order_id": "DROP TABLE", "amount": 10}, 80, False, "does not match"),
        ({"action": "refund", "amount": 10}, 80, False, "order_id is missing"),
        ({"action": "answer", "text": "Hello"}, 0, True, None),  # not a critical action: no rules apply
    ],
)
async def test_the_model_proposes_and_the_rules_decide(
    pipeline: Any, refund: Path, proposal: dict[str, Any], total: float, allowed: bool, reason: str | None
) -> None:
    pipe, provider, _ = pipeline
    provider.responder = lambda req: Reply(json.dumps(proposal))
    result = await pipe.run("refund", {"text": "refund me", "order_total": total})
    if allowed:
        assert result.value == proposal
    else:
        assert result.value == {"action": "escalate", "text": "A person will review this refund."}
        assert any(n.startswith("action refund refused by rules") and reason in n for n in result.notes), result.notes
    if reason and allowed:
        assert any(reason in n for n in result.notes)


def test_bad_rules_are_config_errors(refund: Path) -> None:
    (refund / "features" / "refund.yaml").write_text(FEATURE.replace('"^ord_[0-9]+$"', '"(unclosed"'))
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        load_feature(refund, "refund")
    (refund / "features" / "refund.yaml").write_text(
        FEATURE.replace("{field: amount, max: 100}", "{field: amount, min: 5, max: 1}")
    )
    with pytest.raises(ConfigError, match=r"min \(5\) is above max"):
        load_feature(refund, "refund")
