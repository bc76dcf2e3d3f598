from __future__ import annotations

from pathlib import Path

import pytest

from keel.config.yamlfile import parse_yaml
from keel.errors import ConfigError
from keel.features.spec import FeatureNotFound, load_feature, parse_feature

FULL = """\
prompt: support_answer
model: accurate
retrieval: {collection: docs, top_k: 6, rerank: true, min_score: 0.2}
output: {schema: schemas/answer.json, retries: 2}
guards: {input: [injection, pii_redact], output: [grounded, citations]}
cache: {exact: true, semantic: {threshold: 0.95}}
budget: {per_call_usd: 0.01, per_user_day_usd: 0.50}
review: {when: "confidence < 0.5"}
evals: evals/support_answer.yaml
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for folder in ("features", "prompts", "schemas"):
        (tmp_path / folder).mkdir()
    (tmp_path / "features" / "support_answer.yaml").write_text(FULL)
    (tmp_path / "prompts" / "support_answer.md").write_text("Answer {{ question }}")
    (tmp_path / "schemas" / "answer.json").write_text(
        '{"type": "object", "properties": {"answer": {"type": "string"}}}'
    )
    return tmp_path


def test_the_architecture_example_parses(project: Path) -> None:
    spec = load_feature(project, "support_answer")
    assert spec.name == "support_answer" and spec.model == "accurate"
    assert spec.retrieval is not None and spec.retrieval.collection == "docs" and spec.retrieval.rerank
    assert spec.output is not None and spec.output.schema_path == "schemas/answer.json"
    assert spec.guards is not None and [r.name for r in spec.guards.output] == ["grounded", "citations"]
    assert spec.cache is not None and spec.cache.semantic is not None and spec.cache.semantic.threshold == 0.95
    assert spec.context.policy == "fail"


def test_unconfigured_steps_are_absent() -> None:
    spec = parse_feature(parse_yaml("prompt: classify\n", "features/classify.yaml"), "classify")
    assert (spec.retrieval, spec.output, spec.guards, spec.cache, spec.budget, spec.review) == (None,) * 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: fast\n", "features/classify.yaml: prompt: required key is missing"),
        ("prompt: p\nretreival: {collection: docs}\n", "classify.yaml:2: retreival: unknown key"),
        (
            "prompt: p\nretrieval: {collection: docs, top_k: 500}\n",
            "classify.yaml:2: retrieval.top_k: Input should be less",
        ),
        ("prompt: p\nguards: {input: [injection, telepathy]}\n", "unknown input guard(s) ['telepathy']"),
        ("prompt: p\ncontext: {policy: shrug}\n", "classify.yaml:2: context.policy: Input should be 'fail'"),
        ("prompt: p\nbudget: {per_call_usd: -1}\n", "classify.yaml:2: budget.per_call_usd: Input should be greater"),
        ("- a list\n", "a feature is a mapping"),
    ],
)
def test_spec_errors_name_file_line_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_feature(parse_yaml(text, "features/classify.yaml"), "classify")
    assert message in str(info.value), str(info.value)


def test_referenced_files_are_checked(project: Path) -> None:
    (project / "prompts" / "support_answer.md").unlink()
    with pytest.raises(ConfigError, match=r"support_answer\.yaml:1: prompt: no prompts/support_answer\.md"):
        load_feature(project, "support_answer")
    (project / "prompts" / "support_answer.md").write_text("x")
    (project / "schemas" / "answer.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"output\.schema: schemas/answer\.json is not JSON"):
        load_feature(project, "support_answer")
    (project / "schemas" / "answer.json").write_text('{"title": "no type"}')
    with pytest.raises(ConfigError, match="is not a JSON Schema object"):
        load_feature(project, "support_answer")
    with pytest.raises(FeatureNotFound, match=r"no feature 'ghost' \(features: support_answer\)"):
        load_feature(project, "ghost")
    (project / "schemas" / "answer.json").write_text('{"type": "object", "properties": {"n": {"type": "numbr"}}}')
    with pytest.raises(ConfigError, match=r"is not a valid JSON Schema at properties/n/type"):
        load_feature(project, "support_answer")
    with pytest.raises(FeatureNotFound, match="is not a feature name"):
        load_feature(project, "../etc/passwd")


def test_specs_are_cached_until_a_file_changes(project: Path) -> None:
    first = load_feature(project, "support_answer")
    assert load_feature(project, "support_answer") is first  # parsed once
    path = project / "features" / "support_answer.yaml"
    path.write_text(path.read_text().replace("retries: 2", "retries: 3, max_retry_tokens: 900"))
    changed = load_feature(project, "support_answer")
    assert changed is not first and changed.output is not None and changed.output.retries == 3
    path.write_text(path.read_text() + "colour: red\n")
    with pytest.raises(ConfigError, match="colour: unknown key"):
        load_feature(project, "support_answer")  # a broken edit is an error, not the stale spec


def test_retrieval_and_output_options_are_validated(project: Path) -> None:
    path = project / "features" / "support_answer.yaml"
    base = path.read_text()
    for extra, message in [
        ("retrieval: {collection: docs, mode: fuzzy}", "retrieval.mode"),
        ("retrieval: {collection: docs, feedback: maybe}", "retrieval.feedback"),
        ("output: {schema: schemas/answer.json, pydantic: 'a.b:C'}", "either 'schema'"),
        ("output: {pydantic: 'not a path'}", "is not 'package.module:Class'"),
        ("context: {policy: map_reduce, summary_tokens: 1}", "context.summary_tokens"),
    ]:
        lines = [line for line in base.splitlines() if not line.startswith(extra.split(":")[0] + ":")]
        path.write_text("\n".join([*lines, extra]) + "\n")
        with pytest.raises(ConfigError, match=message):
            load_feature(project, "support_answer")
