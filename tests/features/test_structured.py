from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import ConfigError
from keel.features.structured import StructuredOutputError, complete_structured, parse_and_validate
from keel.gateway.runtime import build_service, close_service
from keel.gateway.service import GatewayService
from keel.testing import Reply
from keel.types import Usage
from tests.conftest import make_settings, scripted_service

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Extract the person: Ada, 36."}]


@pytest.fixture
async def scripted(home: Path):  # type: ignore[no-untyped-def]
    service, provider = scripted_service(home)
    yield service, provider
    await close_service(service)


def reply(text: str) -> Reply:
    return Reply(text, usage=Usage(input_tokens=100, output_tokens=20))


async def test_re_asks_with_the_validation_error_until_valid(scripted) -> None:  # type: ignore[no-untyped-def]
    service, provider = scripted
    provider.enqueue(
        reply("Sure! Ada is 36."), reply('{"name": "Ada", "age": "36"}'), reply('{"name": "Ada", "age": 36}')
    )
    result = await complete_structured(service, model="m", messages=ASK, schema=SCHEMA, retries=2)
    assert result.value == {"name": "Ada", "age": 36} and result.attempts == 3 and not result.fallback
    assert (result.usage.input_tokens, result.usage.output_tokens) == (300, 60)  # every attempt counted
    assert "not JSON" in result.errors[0] and "at age: '36' is not of type 'integer'" in result.errors[1]
    second_ask = provider.calls[1].messages
    assert second_ask[-2] == {"role": "assistant", "content": "Sure! Ada is 36."}
    assert "not valid: the reply is not JSON" in second_ask[-1]["content"]
    assert provider.calls[0].params["response_format"]["json_schema"]["schema"] == SCHEMA
    assert len(set(result.trace_ids)) == 3  # each attempt is its own traced call
    assert result.cost_usd == pytest.approx(3 * (100 * 0.15 + 20 * 0.60) / 1_000_000)  # all three paid for


async def test_bounded_then_fallback_or_a_typed_error(scripted) -> None:  # type: ignore[no-untyped-def]
    service, provider = scripted
    provider.enqueue(*[reply("prose, always prose") for _ in range(5)])
    with pytest.raises(StructuredOutputError) as info:
        await complete_structured(service, model="m", messages=ASK, schema=SCHEMA, retries=1)
    assert len(info.value.attempts) == 2 and len(provider.calls) == 2
    fallback = await complete_structured(
        service, model="m", messages=ASK, schema=SCHEMA, retries=1, fallback={"name": "unknown", "age": 0}
    )
    assert fallback.fallback and fallback.value == {"name": "unknown", "age": 0}
    provider.enqueue(*[reply("prose") for _ in range(5)])
    calls = len(provider.calls)
    with pytest.raises(StructuredOutputError):
        await complete_structured(service, model="m", messages=ASK, schema=SCHEMA, retries=5, max_retry_tokens=200)
    assert len(provider.calls) - calls == 2  # the token budget stopped it before the retry count did


def test_parsing_tolerates_fences_and_reports_paths() -> None:
    assert parse_and_validate('```json\n{"name": "A", "age": 1}\n```', SCHEMA) == ({"name": "A", "age": 1}, None)
    _, problem = parse_and_validate('{"name": "A", "age": -1, "extra": true}', SCHEMA)
    assert problem is not None and problem.startswith("at ") and "(+1 more)" in problem


async def test_an_invalid_schema_is_a_config_error(scripted) -> None:  # type: ignore[no-untyped-def]
    service, _ = scripted
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        await complete_structured(service, model="m", messages=ASK, schema={"type": "strnig"})


async def test_the_local_model_decodes_against_the_schema(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_LOCAL_MODEL", "smollm2-135m-instruct")
    service: GatewayService = build_service(make_settings("{}"), home)
    result = await complete_structured(
        service, model="local", messages=ASK, schema=SCHEMA, params={"max_tokens": 60, "temperature": 0}
    )
    assert set(result.value) == {"name", "age"} and isinstance(result.value["age"], int)
    assert result.attempts == 1  # grammar-constrained: valid the first time
    await close_service(service)
