"""The lead-owned data contracts: Usage arithmetic, Message conversion, the error tree."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

import tokenward
from tokenward import (
    BudgetExceededError,
    ConfigurationError,
    IntegrationUnavailableError,
    Message,
    TokenwardError,
    UnknownModelError,
    Usage,
    UsageParseError,
)


def test_usage_addition_sums_every_field_and_keeps_estimated_flag():
    a = Usage(input=100, output=20, cache_read=40, cache_write_5m=10, reasoning=5)
    b = Usage(input=50, output=10, cache_write_1h=30, audio_input=4, estimated=True)
    total = a + b
    assert total == Usage(
        input=150,
        output=30,
        cache_read=40,
        cache_write_5m=10,
        cache_write_1h=30,
        reasoning=5,
        audio_input=4,
        estimated=True,
    )
    assert total.total == 180
    assert total.cache_write == 40
    assert total.uncached_input == 150 - 40 - 40
    assert sum([a, b]) == total
    assert not (a + a).estimated


def test_usage_is_immutable_and_validated():
    u = Usage(input=1)
    with pytest.raises(AttributeError):
        u.input = 2  # type: ignore[misc]
    with pytest.raises(ValueError, match="input must be >= 0"):
        Usage(input=-1)
    with pytest.raises(TypeError, match="output must be an int"):
        Usage(output=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Usage(output=True)  # type: ignore[arg-type]
    assert not Usage()
    assert Usage(output=1)


def test_message_from_openai_normalizes_roles_and_tool_calls():
    m = Message.from_openai(
        {
            "role": "ai",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"q": "x"}'},
                }
            ],
        }
    )
    assert m.role == "assistant"
    assert m.content == ""
    assert m.tool_calls[0].name == "search"
    assert m.to_openai()["tool_calls"][0]["function"]["arguments"] == '{"q": "x"}'
    parts = Message(
        role="user",
        content=[
            {"type": "text", "text": "a"},
            {"type": "image_url", "image_url": {"url": "x"}},
            {"type": "text", "text": "b"},
        ],
    )
    assert parts.text == "ab"
    with pytest.raises(ValueError, match="no 'role'"):
        Message.from_openai({"content": "hi"})


def test_errors_share_one_base_and_subclass_matching_builtins():
    assert issubclass(UnknownModelError, KeyError)
    assert issubclass(UsageParseError, ValueError)
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(IntegrationUnavailableError, ImportError)
    err = UnknownModelError("gpt-4x", ["gpt-4o", "gpt-4"])
    assert isinstance(err, TokenwardError)
    assert "gpt-4o, gpt-4" in str(err) and "catalog.register" in str(err)
    assert err.code == "unknown-model" and err.code in err.docs_url
    assert 'pip install "tokenward[langchain]"' in str(
        IntegrationUnavailableError("langchain-core", "langchain")
    )


def test_budget_exceeded_maps_to_http_429_with_retry_after():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    err = BudgetExceededError(
        "daily budget 'team' exhausted",
        budget="team",
        scope_key="user_id=u1",
        unit="usd",
        limit=Decimal("5"),
        spent=Decimal("4.9"),
        reserved=Decimal("0"),
        attempted=Decimal("0.2"),
        reset_at=now + timedelta(hours=12, seconds=0.5),
    )
    status, headers, body = err.to_http(now=now)
    assert status == 429
    assert headers == {"Retry-After": str(12 * 3600 + 1)}
    assert body["error"]["budget"] == "team" and body["error"]["limit"] == "5"


def test_public_names_report_the_package_as_their_module():
    assert tokenward.Usage.__module__ == "tokenward"
    assert repr(tokenward.Usage()).startswith("Usage(")
