"""The adapters open the frameworks' containers and hand the core the provider's usage object.

LangChain: ``LLMResult.generations[..].message.usage_metadata``, the provider's usage in
``response_metadata`` / ``generation_info`` / ``llm_output``. LlamaIndex: ``response.raw``
(the provider's response) and ``additional_kwargs``. The core (``Usage.from_any``) never
sees these containers (tests/test_usage.py checks it refuses them).
"""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation, LLMResult
from pydantic import BaseModel, ConfigDict

from tests.test_usage import ANTHROPIC, BEDROCK, GEMINI_REST, LC_ANTHROPIC, OPENAI_CHAT, OPENROUTER
from tokenward.integrations.langchain._common import extract_result, generation_usage
from tokenward.usage import Usage

LC_EXPECTED = Usage(
    input=81000, output=2000, cache_read=50000, cache_write_5m=10000, cache_write_1h=20000
)


def result_of(*messages: AIMessage, llm_output: dict | None = None) -> LLMResult:
    return LLMResult(
        generations=[[ChatGeneration(message=m)] for m in messages], llm_output=llm_output
    )


# ----------------------------------------------------------------------------- LangChain
def test_langchain_usage_metadata_of_each_generation() -> None:
    msg = AIMessage("hi", usage_metadata=LC_ANTHROPIC)
    assert extract_result(result_of(msg)).usage == LC_EXPECTED


def test_langchain_llm_output_token_usage_of_a_plain_llm() -> None:
    legacy = LLMResult(
        generations=[[Generation(text="x")]],
        llm_output={"token_usage": {"prompt_tokens": 11, "completion_tokens": 4}},
    )
    assert extract_result(legacy).usage == Usage(input=11, output=4)


def test_langchain_provider_usage_in_response_metadata_when_no_usage_metadata() -> None:
    openai_style = AIMessage(
        "hi", response_metadata={"token_usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    )
    assert extract_result(result_of(openai_style)).usage == Usage(input=5, output=2)
    # Anthropic's own usage object: its cache tokens are added back into input
    anthropic_style = AIMessage("hi", response_metadata={"usage": ANTHROPIC["usage"]})
    assert extract_result(result_of(anthropic_style)).usage == Usage.from_anthropic(ANTHROPIC)
    # and from a plain LLM's generation_info
    gen = Generation(text="x", generation_info={"usage": BEDROCK["usage"]})
    assert generation_usage(None, gen.generation_info) == Usage.from_bedrock(BEDROCK)


def test_langchain_openrouter_cost_kept_beside_usage_metadata() -> None:
    # ChatOpenAI against OpenRouter: LangChain's UsageMetadata has the tokens, the provider's
    # token_usage (merged into response_metadata) has the cost
    msg = AIMessage(
        "hi",
        usage_metadata={"input_tokens": 194, "output_tokens": 2, "total_tokens": 196},
        response_metadata={"token_usage": OPENROUTER["usage"], "model_name": "openai/gpt-4o"},
    )
    info = extract_result(result_of(msg))
    assert info.usage == Usage(input=194, output=2, reported_cost=Decimal("0.00095"))
    assert info.model == "openai/gpt-4o"
    # a cost reported only for the whole call (llm_output) is kept too
    bare = AIMessage(
        "hi", usage_metadata={"input_tokens": 194, "output_tokens": 2, "total_tokens": 196}
    )
    info = extract_result(result_of(bare, llm_output={"token_usage": OPENROUTER["usage"]}))
    assert info.usage is not None and info.usage.reported_cost == Decimal("0.00095")


def test_langchain_unusable_usage_metadata_falls_back_to_the_provider_usage() -> None:
    msg = AIMessage("hi", response_metadata={"token_usage": OPENAI_CHAT["usage"]})
    msg.usage_metadata = {
        "input_tokens": 5,
        "output_tokens": 5,
        "output_token_details": {"reasoning": 9},
    }  # type: ignore[typeddict-item]
    assert extract_result(result_of(msg)).usage == Usage.from_openai(OPENAI_CHAT)
    # nothing usable anywhere: no usage (the handler counts the text, flagged estimated)
    msg = AIMessage("hi", response_metadata={"token_usage": {"prompt_tokens": "many"}})
    assert extract_result(result_of(msg)).usage is None


# ----------------------------------------------------------------------------- LlamaIndex
def test_llama_index_usage_from_raw_and_additional_kwargs() -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse

    from tokenward.integrations.llama_index._common import usage_from_response

    chat = ChatResponse(message=ChatMessage(role="assistant", content="hi"), raw=OPENAI_CHAT)
    assert usage_from_response(chat) == Usage.from_openai(OPENAI_CHAT)
    gemini = CompletionResponse(text="x", raw=GEMINI_REST)
    assert usage_from_response(gemini) == Usage.from_gemini(GEMINI_REST)
    kwargs_only = CompletionResponse(
        text="x", additional_kwargs={"prompt_tokens": 42, "completion_tokens": 7}
    )
    assert usage_from_response(kwargs_only) == Usage(input=42, output=7)
    # llama-index-llms-ollama keeps the native response in raw
    ollama = ChatResponse(
        message=ChatMessage(role="assistant", content="hi"),
        raw={"model": "llama3.2", "done": True, "prompt_eval_count": 26, "eval_count": 298},
    )
    assert usage_from_response(ollama) == Usage(input=26, output=298)
    assert usage_from_response(CompletionResponse(text="x", raw={"id": "no usage"})) is None


def test_llama_index_openrouter_cost_from_an_sdk_response_object() -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse

    from tokenward.integrations.llama_index._common import usage_from_response

    class CompletionUsage(BaseModel):  # openai.types.CompletionUsage keeps extra fields
        model_config = ConfigDict(extra="allow")
        prompt_tokens: int
        completion_tokens: int

    class ChatCompletion(BaseModel):
        id: str
        model: str
        usage: CompletionUsage

    raw = ChatCompletion(
        id="gen-1",
        model="openai/gpt-4o",
        usage=CompletionUsage(prompt_tokens=194, completion_tokens=2, cost=0.00095),
    )
    response = ChatResponse(message=ChatMessage(role="assistant", content="hi"), raw=raw)
    assert usage_from_response(response) == Usage(
        input=194, output=2, reported_cost=Decimal("0.00095")
    )
    assert usage_from_response(SimpleNamespace(raw=None, additional_kwargs={})) is None
