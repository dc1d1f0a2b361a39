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
        # an object with a `usage_metadata` attribute (google-genai's response, an AIMessage)
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
def test_from_any_reads_usage_metadata_but_not_framework_containers() -> None:
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
    assert Usage.from_any(msg) == expected  # its usage_metadata attribute is the usage object
    # an LLMResult, LangChain's `llm_output`, a LlamaIndex response: the adapters open those
    # (tests/test_usage_extraction.py); the core is handed the usage object itself
    result = outputs.LLMResult(generations=[[outputs.ChatGeneration(message=msg)]], llm_output=None)
    legacy = {"llm_output": {"token_usage": {"prompt_tokens": 9, "completion_tokens": 4}}}
    llama = {"message": {"role": "assistant"}, "raw": OPENAI_CHAT, "additional_kwargs": {}}
    for container in (result, legacy, llama, {"response": SimpleNamespace(raw=BEDROCK)}):
        with pytest.raises(UsageParseError, match="could not find token usage"):
            Usage.from_any(container)


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


# ------------------------------------------------------------------ shapes added with the registry
# Fixtures follow the providers' documented responses (URLs beside each).


def test_openai_embeddings_response() -> None:
    # https://platform.openai.com/docs/api-reference/embeddings/create
    response = {
        "object": "list",
        "data": [{"object": "embedding", "embedding": [0.0023064255, -0.009327292], "index": 0}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    assert Usage.from_any(response) == Usage.from_openai(response) == Usage(input=8)


def test_openai_responses_stream_completed_event() -> None:
    # https://platform.openai.com/docs/api-reference/responses-streaming/response/completed
    event = {"type": "response.completed", "sequence_number": 12, "response": OPENAI_RESPONSES}
    assert Usage.from_any(event) == Usage(input=3000, output=900, cache_read=2048, reasoning=640)


def test_anthropic_stream_message_start_event() -> None:
    # https://docs.anthropic.com/en/docs/build-with-claude/streaming#event-types
    event = {
        "type": "message_start",
        "message": {
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5",
            "usage": {
                "input_tokens": 472,
                "output_tokens": 2,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 2048,
            },
        },
    }
    assert Usage.from_any(event) == Usage(input=2520, output=2, cache_read=2048)


def test_gemini_audio_output_from_candidates_details() -> None:
    # https://ai.google.dev/api/generate-content#UsageMetadata (a TTS model answers in audio)
    response = {
        "candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "audio/L16"}}]}}],
        "usageMetadata": {
            "promptTokenCount": 9,
            "candidatesTokenCount": 1536,
            "totalTokenCount": 1545,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
            "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 1536}],
        },
        "modelVersion": "gemini-2.5-flash-preview-tts",
    }
    assert Usage.from_any(response) == Usage(input=9, output=1536, audio_output=1536)


def test_bedrock_invoke_model_response_headers() -> None:
    # boto3 invoke_model(): the body is the model's own JSON; token counts are HTTP headers
    # (input without cache reads and writes, like Converse)
    response = {
        "ResponseMetadata": {
            "RequestId": "9d3b1f8e-0000-4a5e-9d7e-4a1f0e2b8c11",
            "HTTPStatusCode": 200,
            "HTTPHeaders": {
                "content-type": "application/json",
                "x-amzn-bedrock-invocation-latency": "926",
                "x-amzn-bedrock-input-token-count": "14",
                "x-amzn-bedrock-output-token-count": "36",
                "x-amzn-bedrock-cache-read-input-token-count": "1024",
                "x-amzn-bedrock-cache-write-input-token-count": "0",
            },
        },
        "contentType": "application/json",
        "body": object(),  # botocore's StreamingBody
    }
    expected = Usage(input=1038, output=36, cache_read=1024)
    assert Usage.from_any(response) == Usage.from_bedrock(response) == expected


def test_bedrock_invoke_model_stream_invocation_metrics() -> None:
    # InvokeModelWithResponseStream: the last chunk carries amazon-bedrock-invocationMetrics
    chunk = {
        "type": "message_stop",
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": 12,
            "outputTokenCount": 30,
            "invocationLatency": 812,
            "firstByteLatency": 301,
            "cacheReadInputTokenCount": 0,
            "cacheWriteInputTokenCount": 2000,
        },
    }
    assert Usage.from_any(chunk) == Usage(input=2012, output=30, cache_write_5m=2000)


def test_bedrock_invoke_model_anthropic_body() -> None:
    # invoke_model() with a Claude model: the body is Anthropic's Messages response
    body = {"id": "msg_bdrk_019V7ABaw8ZZZYuRDSTWK7VE", "type": "message", **ANTHROPIC}
    assert Usage.from_bedrock(body) == Usage.from_anthropic(body)


# https://docs.cohere.com/v2/reference/chat: billed_units (what Cohere bills) and tokens (all it
# processed, its prompt template included)
COHERE_V2 = {
    "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
    "finish_reason": "COMPLETE",
    "message": {"role": "assistant", "content": [{"type": "text", "text": "LLMs are..."}]},
    "usage": {
        "billed_units": {"input_tokens": 17, "output_tokens": 386},
        "tokens": {"input_tokens": 85, "output_tokens": 386},
        "cached_tokens": 0,
    },
}


def test_cohere_v2_bills_billed_units() -> None:
    assert Usage.from_any(COHERE_V2) == Usage.from_cohere(COHERE_V2) == Usage(input=17, output=386)


def test_cohere_sdk_floats_v1_meta_and_tokens_only() -> None:
    # the cohere SDK types counts as floats; v1 puts them under `meta`; without billed units
    # the processed tokens are used
    assert Usage.from_any({"usage": {"billed_units": {"input_tokens": 5.0}}}) == Usage(input=5)
    embed_v1 = {
        "id": "x",
        "meta": {"api_version": {"version": "1"}, "billed_units": {"input_tokens": 3}},
    }
    assert Usage.from_cohere(embed_v1) == Usage(input=3)
    assert Usage.from_cohere({"tokens": {"input_tokens": 85, "output_tokens": 9}}) == Usage(
        input=85, output=9
    )


def test_mistral_chat_and_transcription() -> None:
    # https://docs.mistral.ai/api/#tag/chat: the Chat Completions usage shape
    chat = {
        "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
        "object": "chat.completion",
        "model": "mistral-small-latest",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "..."}}],
        "usage": {"prompt_tokens": 16, "completion_tokens": 34, "total_tokens": 50},
    }
    assert Usage.from_any(chat) == Usage(input=16, output=34)
    # audio transcription: prompt_audio_seconds is a duration, not a token count
    transcription = {
        "model": "voxtral-mini-latest",
        "text": "The transcribed text...",
        "usage": {
            "prompt_audio_seconds": 30,
            "prompt_tokens": 150,
            "completion_tokens": 42,
            "total_tokens": 192,
        },
    }
    assert Usage.from_any(transcription) == Usage(input=150, output=42)


def test_deepseek_reasoner_response() -> None:
    # https://api-docs.deepseek.com/api/create-chat-completion (both cache fields reported)
    response = {
        "id": "930c60df-bf64-41c9-a88e-3ec75f81e00e",
        "model": "deepseek-reasoner",
        "usage": {
            "prompt_tokens": 16,
            "completion_tokens": 1205,
            "total_tokens": 1221,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 1080},
            "prompt_cache_hit_tokens": 0,
            "prompt_cache_miss_tokens": 16,
        },
    }
    assert Usage.from_any(response) == Usage(input=16, output=1205, reasoning=1080)
    hit = {"prompt_tokens": 100, "completion_tokens": 1, "prompt_cache_hit_tokens": 64}
    assert Usage.from_any(hit).cache_read == 64
    with pytest.raises(UsageParseError) as info:
        Usage.from_any({**hit, "prompt_cache_hit_tokens": 101})
    assert info.value.field == "prompt_cache_hit_tokens"


# https://openrouter.ai/docs/use-cases/usage-accounting: cost in credits (USD) beside the tokens
OPENROUTER = {
    "id": "gen-1760706313-WJZGQrQsBUfIN4FegFQ0",
    "provider": "OpenAI",
    "model": "openai/gpt-4o",
    "object": "chat.completion",
    "usage": {
        "prompt_tokens": 194,
        "completion_tokens": 2,
        "total_tokens": 196,
        "cost": 0.00095,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 100, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cost_details": {
            "upstream_inference_cost": None,
            "upstream_inference_prompt_cost": 0.000485,
            "upstream_inference_completions_cost": 0.00002,
        },
    },
}


def test_openrouter_cost_is_reported_beside_the_tokens() -> None:
    from decimal import Decimal

    usage = Usage.from_any(OPENROUTER)
    assert usage == Usage(input=194, output=2, cache_write_5m=100, reported_cost=Decimal("0.00095"))
    assert Usage.from_openai(OPENROUTER) == usage


def test_openrouter_byok_adds_the_upstream_cost() -> None:
    from decimal import Decimal

    from tokenward.usage import provider_cost

    byok = {
        **OPENROUTER["usage"],
        "cost": 0.0000475,
        "is_byok": True,
        "cost_details": {"upstream_inference_cost": 0.00095},
    }
    assert provider_cost(byok) == Decimal("0.0009975")
    # older responses carry no is_byok: an upstream cost only appears with BYOK
    older = {k: v for k, v in byok.items() if k != "is_byok"}
    assert provider_cost(older) == Decimal("0.0009975")
    assert provider_cost({"prompt_tokens": 1}) is None
    with pytest.raises(UsageParseError) as info:
        Usage.from_any({"prompt_tokens": 1, "completion_tokens": 1, "cost": "-1"})
    assert info.value.field == "cost"


def test_openrouter_responses_api_and_sdk_extra_fields() -> None:
    from decimal import Decimal

    from pydantic import BaseModel, ConfigDict

    responses = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 25,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 35,
        "cost": 0.0012,
        "is_byok": False,
    }
    assert Usage.from_any({"usage": responses}) == Usage(
        input=10, output=25, reported_cost=Decimal("0.0012")
    )

    class CompletionUsage(BaseModel):  # the OpenAI SDK keeps unknown fields as extras
        model_config = ConfigDict(extra="allow")
        prompt_tokens: int
        completion_tokens: int
        total_tokens: int

    sdk = CompletionUsage(prompt_tokens=194, completion_tokens=2, total_tokens=196, cost=0.00095)
    assert Usage.from_any(sdk).reported_cost == Decimal("0.00095")


def test_ollama_native_api_response() -> None:
    # https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
    response = {
        "model": "llama3.2",
        "created_at": "2023-12-12T14:13:43.416799Z",
        "message": {"role": "assistant", "content": "Hello! How are you today?"},
        "done": True,
        "total_duration": 5191566416,
        "load_duration": 2154458,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 383809000,
        "eval_count": 298,
        "eval_duration": 4799921000,
    }
    assert Usage.from_any(response) == Usage(input=26, output=298)


# ------------------------------------------------------------------ the registry itself
def test_every_shape_is_registered_with_a_parser_method_for_its_family() -> None:
    from tokenward.usage import usage_shapes

    names = [s.name for s in usage_shapes()]
    assert set(names) >= {
        "openai-chat",
        "openai-responses",
        "anthropic",
        "gemini",
        "bedrock-converse",
        "bedrock-invoke",
        "bedrock-invoke-stream",
        "langchain",
        "cohere",
        "deepseek",
        "openrouter",
        "openrouter-responses",
        "ollama",
    }
    ranks = [s.rank for s in usage_shapes()]
    assert ranks == sorted(ranks, reverse=True)  # best first: the precedence is the rank
    for shape in usage_shapes():
        for family in shape.families:
            assert callable(getattr(Usage, f"from_{family}")), family


def test_not_found_error_lists_the_registered_shapes() -> None:
    from tokenward.usage import usage_shapes

    with pytest.raises(UsageParseError) as info:
        Usage.from_any({"id": "x", "choices": []})
    message = str(info.value)
    assert "keys: choices, id" in message
    for shape in usage_shapes():
        assert shape.name in message
    for method in ("from_openai", "from_anthropic", "from_gemini", "from_bedrock", "from_cohere"):
        assert method in message


def test_a_registered_shape_is_recognized_and_listed(monkeypatch) -> None:
    from tokenward.usage import _registry, register_shape
    from tokenward.usage._registry import PROVIDER

    monkeypatch.setattr(_registry, "_shapes", dict(_registry._shapes))
    monkeypatch.setattr(_registry, "_views", {})

    @register_shape(
        "acme",
        summary="Acme LLM",
        markers=[("acme_in", "acme_out")],
        rank=PROVIDER,
        paths=[("acme_usage",)],
    )
    def acme(data):  # type: ignore[no-untyped-def]
        return Usage(input=int(data["acme_in"]), output=int(data.get("acme_out", 0)))

    assert Usage.from_any({"acme_usage": {"acme_in": 3, "acme_out": 4}}) == Usage(input=3, output=4)
    with pytest.raises(UsageParseError, match=r"acme \(acme_in/acme_out\)"):
        Usage.from_any({"nothing": 1})
    with pytest.raises(ValueError, match="already registered"):
        register_shape("acme", summary="", markers=[("x",)], rank=PROVIDER)(acme)


def test_two_shapes_of_one_rank_in_one_payload_are_an_error_not_a_pick() -> None:
    with pytest.raises(
        UsageParseError, match=r"ambiguous usage payload.*bedrock-converse.*openai-chat"
    ):
        Usage.from_any({"prompt_tokens": 1, "completion_tokens": 1, "inputTokens": 1})


def test_precedence_is_the_rank_not_the_order_of_checks() -> None:
    # Anthropic's cache keys refine plain input/output tokens (rank REFINED > GENERIC);
    # OpenRouter's cost refines DeepSeek's cache fields (REPORTED_COST > REFINED)
    assert (
        Usage.from_any({"input_tokens": 1, "output_tokens": 1, "cache_read_input_tokens": 5}).input
        == 6
    )
    both = {"prompt_tokens": 9, "completion_tokens": 1, "prompt_cache_hit_tokens": 4, "cost": "0.1"}
    assert Usage.from_any(both).reported_cost is not None
    # a LiteLLM-style object: Chat Completions keys plus Anthropic's cache keys without
    # input_tokens is Chat Completions (prompt_tokens already counts the cache)
    litellm = {"prompt_tokens": 100, "completion_tokens": 5, "cache_read_input_tokens": 80}
    assert Usage.from_any(litellm) == Usage(input=100, output=5)


def test_provider_parsers_read_only_their_shapes() -> None:
    # generic input/output tokens mean the same everywhere: every provider parser reads them
    assert Usage.from_openai({"input_tokens": 10, "output_tokens": 5}) == Usage(input=10, output=5)
    assert Usage.from_anthropic({"usage": {"input_tokens": 1, "output_tokens": 2}}) == Usage(
        input=1, output=2
    )
    with pytest.raises(UsageParseError) as info:
        Usage.from_anthropic(OPENAI_CHAT)
    assert info.value.field == "input_tokens"
    with pytest.raises(UsageParseError) as info:
        Usage.from_gemini(BEDROCK)
    assert info.value.field == "promptTokenCount"


def test_pydantic_sdk_objects_are_read_without_serializing_them() -> None:
    from pydantic import BaseModel

    class Usage_(BaseModel):  # the shape of openai.types.CompletionUsage
        prompt_tokens: int
        completion_tokens: int

    class ChatCompletion(BaseModel):
        id: str
        usage: Usage_

        def model_dump(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise AssertionError("a large response is not serialized to read its usage")

    response = ChatCompletion(id="x", usage=Usage_(prompt_tokens=3, completion_tokens=1))
    assert Usage.from_any(response) == Usage(input=3, output=1)
