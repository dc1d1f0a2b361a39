"""Usage parsers: one normalized record from every provider's payload."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenward.errors import UsageParseError
from tokenward.usage import Usage

# ------------------------------------------------------------------ OpenAI
OPENAI_CHAT = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
}

OPENAI_O3 = {
    "prompt_tokens": 1200,
    "completion_tokens": 5400,
    "total_tokens": 6600,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 4800},
}

OPENAI_RESPONSES = {
    "id": "resp_123",
    "object": "response",
    "usage": {
        "input_tokens": 3000,
        "input_tokens_details": {"cached_tokens": 2048},
        "output_tokens": 900,
        "output_tokens_details": {"reasoning_tokens": 640},
        "total_tokens": 3900,
    },
}

OPENAI_AUDIO = {
    "prompt_tokens": 500,
    "completion_tokens": 800,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 400},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 700},
}


def test_openai_chat_with_cache() -> None:
    u = Usage.from_openai(OPENAI_CHAT)
    assert u == Usage(input=2006, output=300, cache_read=1920)
    assert u.uncached_input == 86
    assert Usage.from_openai(OPENAI_CHAT["usage"]) == u


def test_openai_reasoning() -> None:
    assert Usage.from_openai(OPENAI_O3) == Usage(input=1200, output=5400, reasoning=4800)


def test_openai_responses_api() -> None:
    u = Usage.from_openai(OPENAI_RESPONSES)
    assert u == Usage(input=3000, output=900, cache_read=2048, reasoning=640)


def test_openai_audio() -> None:
    assert Usage.from_openai(OPENAI_AUDIO) == Usage(
        input=500, output=800, audio_input=400, audio_output=700
    )


def test_openai_embeddings() -> None:
    assert Usage.from_openai({"prompt_tokens": 8, "total_tokens": 8}) == Usage(input=8)


def test_deepseek_cache_hit_fields() -> None:
    payload = {
        "prompt_tokens": 10000,
        "completion_tokens": 1000,
        "total_tokens": 11000,
        "prompt_cache_hit_tokens": 6000,
        "prompt_cache_miss_tokens": 4000,
    }
    assert Usage.from_openai(payload) == Usage(input=10000, output=1000, cache_read=6000)


def test_openai_sdk_object() -> None:
    # the shape of openai.types.CompletionUsage: attributes, nested objects, some None
    usage = SimpleNamespace(
        prompt_tokens=100,
        completion_tokens=20,
        total_tokens=120,
        prompt_tokens_details=SimpleNamespace(cached_tokens=None, audio_tokens=None),
        completion_tokens_details=None,
    )
    assert Usage.from_openai(SimpleNamespace(usage=usage, id="x")) == Usage(input=100, output=20)


# ------------------------------------------------------------------ Anthropic
ANTHROPIC = {
    "id": "msg_01",
    "type": "message",
    "model": "claude-sonnet-4-20250514",
    "usage": {
        "input_tokens": 1000,
        "cache_creation_input_tokens": 30000,
        "cache_read_input_tokens": 50000,
        "cache_creation": {"ephemeral_5m_input_tokens": 10000, "ephemeral_1h_input_tokens": 20000},
        "output_tokens": 2000,
        "service_tier": "standard",
        "server_tool_use": None,
    },
}


def test_anthropic_adds_cache_back_into_input() -> None:
    u = Usage.from_anthropic(ANTHROPIC)
    assert u == Usage(
        input=81000, output=2000, cache_read=50000, cache_write_5m=10000, cache_write_1h=20000
    )
    assert u.uncached_input == 1000


def test_anthropic_without_ttl_split_is_all_5m() -> None:
    payload = {
        "input_tokens": 12,
        "output_tokens": 7,
        "cache_creation_input_tokens": 2048,
        "cache_read_input_tokens": None,
    }
    assert Usage.from_anthropic(payload) == Usage(input=2060, output=7, cache_write_5m=2048)


def test_anthropic_partial_split_remainder_is_5m() -> None:
    payload = {
        "input_tokens": 0,
        "output_tokens": 1,
        "cache_creation_input_tokens": 300,
        "cache_creation": {"ephemeral_1h_input_tokens": 100},
    }
    assert Usage.from_anthropic(payload) == Usage(
        input=300, output=1, cache_write_5m=200, cache_write_1h=100
    )


def test_anthropic_split_larger_than_total_is_rejected() -> None:
    payload = {
        "input_tokens": 0,
        "output_tokens": 1,
        "cache_creation_input_tokens": 10,
        "cache_creation": {"ephemeral_5m_input_tokens": 100},
    }
    with pytest.raises(UsageParseError) as info:
        Usage.from_anthropic(payload)
    assert info.value.field == "cache_creation"


# ------------------------------------------------------------------ Gemini
GEMINI_REST = {
    "candidates": [{"content": {"parts": [{"text": "..."}], "role": "model"}}],
    "usageMetadata": {
        "promptTokenCount": 250000,
        "candidatesTokenCount": 1000,
        "totalTokenCount": 254000,
        "cachedContentTokenCount": 200000,
        "thoughtsTokenCount": 3000,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 249000},
            {"modality": "IMAGE", "tokenCount": 1000},
        ],
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 200000}],
    },
    "modelVersion": "gemini-2.5-pro",
}


def test_gemini_rest_camel_case() -> None:
    u = Usage.from_gemini(GEMINI_REST)
    # thoughts are billed as output but not part of candidatesTokenCount
    assert u == Usage(
        input=250000, output=4000, cache_read=200000, reasoning=3000, image_input=1000
    )
    assert u.total == 254000  # equals totalTokenCount


def test_gemini_sdk_snake_case_with_tool_use_and_audio() -> None:
    class Modality:  # enum-like value as the google-genai SDK returns
        value = "AUDIO"

    meta = {
        "prompt_token_count": 1200,
        "candidates_token_count": 80,
        "tool_use_prompt_token_count": 300,
        "thoughts_token_count": None,
        "cached_content_token_count": None,
        "prompt_tokens_details": [
            {"modality": Modality(), "token_count": 700},
            {"modality": "MediaModality.TEXT", "token_count": 500},
        ],
        "total_token_count": 1580,
    }
    u = Usage.from_gemini({"usage_metadata": meta})
    assert u == Usage(input=1500, output=80, audio_input=700)


def test_gemini_cached_more_than_prompt_rejected() -> None:
    with pytest.raises(UsageParseError) as info:
        Usage.from_gemini(
            {"promptTokenCount": 10, "candidatesTokenCount": 1, "cachedContentTokenCount": 11}
        )
    assert info.value.field == "cachedContentTokenCount"


# ------------------------------------------------------------------ Bedrock Converse
BEDROCK = {
    "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
    "stopReason": "end_turn",
    "usage": {
        "inputTokens": 20,
        "outputTokens": 150,
        "totalTokens": 5170,
        "cacheReadInputTokens": 3000,
        "cacheWriteInputTokens": 2000,
    },
    "metrics": {"latencyMs": 812},
}


def test_bedrock_converse_input_excludes_cache() -> None:
    u = Usage.from_bedrock(BEDROCK)
    assert u == Usage(input=5020, output=150, cache_read=3000, cache_write_5m=2000)
    assert u.total == BEDROCK["usage"]["totalTokens"]


def test_bedrock_cache_details_split_ttl() -> None:
    payload = {
        "inputTokens": 5,
        "outputTokens": 1,
        "cacheWriteInputTokens": 3000,
        "cacheDetails": [{"ttl": "1h", "inputTokens": 1000}, {"ttl": "5m", "inputTokens": 2000}],
    }
    assert Usage.from_bedrock(payload) == Usage(
        input=3005, output=1, cache_write_5m=2000, cache_write_1h=1000
    )


# ------------------------------------------------------------------ LangChain
LC_OPENAI = {
    "input_tokens": 350,
    "output_tokens": 240,
    "total_tokens": 590,
    "input_token_details": {"audio": 10, "cache_read": 100},
    "output_token_details": {"audio": 10, "reasoning": 200},
}

LC_ANTHROPIC = {
    "input_tokens": 81000,
    "output_tokens": 2000,
    "total_tokens": 83000,
    "input_token_details": {
        "cache_read": 50000,
        "cache_creation": 30000,
        "ephemeral_5m_input_tokens": 10000,
        "ephemeral_1h_input_tokens": 20000,
    },
}


def test_langchain_usage_metadata() -> None:
    assert Usage.from_langchain(LC_OPENAI) == Usage(
        input=350, output=240, cache_read=100, audio_input=10, reasoning=200, audio_output=10
    )


def test_langchain_anthropic_ttl_split() -> None:
    assert Usage.from_langchain(LC_ANTHROPIC) == Usage(
        input=81000, output=2000, cache_read=50000, cache_write_5m=10000, cache_write_1h=20000
    )
    # some versions zero the total when the split is present: same result
    zeroed = {
        **LC_ANTHROPIC,
        "input_token_details": {**LC_ANTHROPIC["input_token_details"], "cache_creation": 0},
    }
    assert Usage.from_langchain(zeroed) == Usage.from_langchain(LC_ANTHROPIC)


# ------------------------------------------------------------------ from_any
@dataclass
class FakeAIMessage:
    content: str
    usage_metadata: dict[str, Any] | None
    response_metadata: dict[str, Any]


class FakePydantic:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def model_dump(self) -> dict[str, Any]:
        return self._data


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (OPENAI_CHAT, Usage(input=2006, output=300, cache_read=1920)),
        (OPENAI_RESPONSES, Usage(input=3000, output=900, cache_read=2048, reasoning=640)),
        (
            ANTHROPIC,
            Usage(
                input=81000,
                output=2000,
                cache_read=50000,
                cache_write_5m=10000,
                cache_write_1h=20000,
            ),
        ),
        (
            GEMINI_REST,
            Usage(input=250000, output=4000, cache_read=200000, reasoning=3000, image_input=1000),
        ),
        (BEDROCK, Usage(input=5020, output=150, cache_read=3000, cache_write_5m=2000)),
        (
            LC_OPENAI,
            Usage(
                input=350,
                output=240,
                cache_read=100,
                audio_input=10,
                reasoning=200,
                audio_output=10,
            ),
        ),
        ({"input_tokens": 10, "output_tokens": 3}, Usage(input=10, output=3)),
        # LangChain LLMResult.llm_output
        (
            {
                "llm_output": {
                    "token_usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
                }
            },
            Usage(input=9, output=4),
        ),
        # LangChain AIMessage (dataclass stand-in): usage_metadata wins
        (
            FakeAIMessage("hi", LC_ANTHROPIC, {"model_name": "claude"}),
            Usage(
                input=81000,
                output=2000,
                cache_read=50000,
                cache_write_5m=10000,
                cache_write_1h=20000,
            ),
        ),
        # message without usage_metadata: falls back to response_metadata["token_usage"]
        (
            FakeAIMessage(
                "hi", None, {"token_usage": {"prompt_tokens": 5, "completion_tokens": 2}}
            ),
            Usage(input=5, output=2),
        ),
        # pydantic-like SDK response objects
        (
            FakePydantic({"id": "msg", "usage": ANTHROPIC["usage"]}),
            Usage(
                input=81000,
                output=2000,
                cache_read=50000,
                cache_write_5m=10000,
                cache_write_1h=20000,
            ),
        ),
        # LlamaIndex ChatResponse: usage inside .raw
        (
            {"message": {"role": "assistant"}, "raw": OPENAI_CHAT, "additional_kwargs": {}},
            Usage(input=2006, output=300, cache_read=1920),
        ),
        # LlamaIndex legacy callback payload: {EventPayload.RESPONSE: ChatResponse(raw=...)}
        (
            {"response": SimpleNamespace(raw=BEDROCK, additional_kwargs={})},
            Usage(input=5020, output=150, cache_read=3000, cache_write_5m=2000),
        ),
        (
            SimpleNamespace(
                usage_metadata=SimpleNamespace(prompt_token_count=7, candidates_token_count=2)
            ),
            Usage(input=7, output=2),
        ),
    ],
)
def test_from_any_detects_shape(payload: Any, expected: Usage) -> None:
    assert Usage.from_any(payload) == expected


def test_from_any_passes_usage_through() -> None:
    u = Usage(input=1, output=2, estimated=True)
    assert Usage.from_any(u) is u


def test_from_any_without_usage_fails_clearly() -> None:
    with pytest.raises(UsageParseError, match="could not find token usage"):
        Usage.from_any({"id": "x", "choices": []})
    with pytest.raises(UsageParseError):
        Usage.from_any(None)


# ------------------------------------------------------------------ malformed payloads
@pytest.mark.parametrize(
    ("parser", "payload", "field"),
    [
        (Usage.from_openai, {"prompt_tokens": -1, "completion_tokens": 2}, "prompt_tokens"),
        (Usage.from_openai, {"prompt_tokens": "ten", "completion_tokens": 2}, "prompt_tokens"),
        (Usage.from_openai, {"prompt_tokens": 10, "completion_tokens": 2.5}, "completion_tokens"),
        (Usage.from_openai, {"prompt_tokens": 10, "completion_tokens": True}, "completion_tokens"),
        (
            Usage.from_openai,
            {
                "prompt_tokens": 10,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 11},
            },
            "prompt_tokens_details.cached_tokens",
        ),
        (
            Usage.from_openai,
            {
                "prompt_tokens": 10,
                "completion_tokens": 2,
                "completion_tokens_details": {"reasoning_tokens": 3},
            },
            "completion_tokens_details.reasoning_tokens",
        ),
        (
            Usage.from_openai,
            {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": 5},
            "prompt_tokens_details",
        ),
        (Usage.from_openai, {"foo": 1}, "prompt_tokens"),
        (
            Usage.from_anthropic,
            {"input_tokens": 1, "output_tokens": 2, "cache_read_input_tokens": -5},
            "cache_read_input_tokens",
        ),
        (
            Usage.from_gemini,
            {"promptTokenCount": 10, "candidatesTokenCount": "x"},
            "candidatesTokenCount",
        ),
        (Usage.from_bedrock, {"inputTokens": 1, "outputTokens": [3]}, "outputTokens"),
        (
            Usage.from_langchain,
            {"input_tokens": 5, "output_tokens": 5, "output_token_details": {"reasoning": 6}},
            "output_token_details.reasoning",
        ),
        (
            Usage.from_any,
            {"usage": {"prompt_tokens": 3, "completion_tokens": -3}},
            "completion_tokens",
        ),
    ],
)
def test_malformed_payload_names_field(parser, payload: dict, field: str) -> None:
    with pytest.raises(UsageParseError) as info:
        parser(payload)
    assert info.value.field == field
    assert field.split(".")[-1] in str(info.value)
    assert isinstance(info.value, ValueError)


def test_numeric_strings_and_integral_floats_are_accepted() -> None:
    assert Usage.from_openai({"prompt_tokens": "12", "completion_tokens": 3.0}) == Usage(
        input=12, output=3
    )


def test_none_values_are_zero() -> None:
    payload = {
        "prompt_tokens": 5,
        "completion_tokens": None,
        "prompt_tokens_details": None,
        "completion_tokens_details": {"reasoning_tokens": None},
    }
    assert Usage.from_openai(payload) == Usage(input=5)


def test_parsed_usages_add_up() -> None:
    total = sum([Usage.from_openai(OPENAI_CHAT), Usage.from_openai(OPENAI_O3)])
    assert total == Usage(input=3206, output=5700, cache_read=1920, reasoning=4800)


# ------------------------------------------------------------------ real framework objects
def test_from_any_on_real_langchain_objects() -> None:
    messages = pytest.importorskip("langchain_core.messages")
    outputs = pytest.importorskip("langchain_core.outputs")
    msg = messages.AIMessage(
        content="hi",
        usage_metadata=LC_ANTHROPIC,
        response_metadata={"model_name": "claude-sonnet-4-20250514"},
    )
    expected = Usage(
        input=81000, output=2000, cache_read=50000, cache_write_5m=10000, cache_write_1h=20000
    )
    assert Usage.from_any(msg) == expected
    # LLMResult without llm_output: found on generations[0][0].message
    result = outputs.LLMResult(generations=[[outputs.ChatGeneration(message=msg)]], llm_output=None)
    assert Usage.from_any(result) == expected
    # legacy OpenAI-style llm_output
    legacy = outputs.LLMResult(
        generations=[[outputs.Generation(text="x")]],
        llm_output={"token_usage": {"prompt_tokens": 11, "completion_tokens": 4}},
    )
    assert Usage.from_any(legacy) == Usage(input=11, output=4)


def test_from_any_on_pydantic_sdk_models() -> None:
    from pydantic import BaseModel

    class CacheCreation(BaseModel):
        ephemeral_5m_input_tokens: int = 0
        ephemeral_1h_input_tokens: int = 0

    class AnthropicUsage(BaseModel):  # the shape of anthropic.types.Usage
        input_tokens: int
        output_tokens: int
        cache_creation_input_tokens: int | None = None
        cache_read_input_tokens: int | None = None
        cache_creation: CacheCreation | None = None

    class Message(BaseModel):
        id: str
        usage: AnthropicUsage

    message = Message(
        id="msg_1",
        usage=AnthropicUsage(
            input_tokens=3,
            output_tokens=9,
            cache_creation_input_tokens=100,
            cache_read_input_tokens=0,
            cache_creation=CacheCreation(ephemeral_1h_input_tokens=100),
        ),
    )
    assert Usage.from_any(message) == Usage(input=103, output=9, cache_write_1h=100)
    assert Usage.from_anthropic(message.usage) == Usage(input=103, output=9, cache_write_1h=100)


def test_bedrock_stream_metadata_event() -> None:
    event = {
        "metadata": {
            "usage": {"inputTokens": 12, "outputTokens": 30, "totalTokens": 42},
            "metrics": {"latencyMs": 300},
        }
    }
    assert Usage.from_any(event) == Usage(input=12, output=30)


counts = st.integers(min_value=0, max_value=10**9)


@given(counts, counts, counts, counts, counts)
def test_anthropic_and_bedrock_add_cache_back(uncached, read, five, one, out) -> None:
    anthropic = Usage.from_anthropic(
        {
            "input_tokens": uncached,
            "output_tokens": out,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": five + one,
            "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": one},
        }
    )
    bedrock = Usage.from_bedrock(
        {
            "inputTokens": uncached,
            "outputTokens": out,
            "cacheReadInputTokens": read,
            "cacheWriteInputTokens": five + one,
            "cacheDetails": [{"ttl": "1h", "inputTokens": one}, {"ttl": "5m", "inputTokens": five}],
        }
    )
    assert anthropic == bedrock
    assert anthropic.input == uncached + read + five + one
    assert anthropic.uncached_input == uncached
    # the same call seen through LangChain's UsageMetadata gives the same record
    assert (
        Usage.from_langchain(
            {
                "input_tokens": anthropic.input,
                "output_tokens": out,
                "input_token_details": {
                    "cache_read": read,
                    "cache_creation": five + one,
                    "ephemeral_5m_input_tokens": five,
                    "ephemeral_1h_input_tokens": one,
                },
            }
        )
        == anthropic
    )


def test_reported_cost_is_kept_beside_tokens_and_sums_only_when_every_part_has_one() -> None:
    from decimal import Decimal

    a = Usage(input=10, output=5, reported_cost=Decimal("0.0001"))
    b = Usage(input=1, output=1, reported_cost=Decimal("0.0002"))
    assert (a + b).reported_cost == Decimal("0.0003")
    assert (a + Usage(input=1)).reported_cost is None
    assert a.to_dict()["reported_cost"] == "0.0001"
    with pytest.raises(TypeError):
        Usage(input=1, reported_cost=0.5)  # type: ignore[arg-type]
