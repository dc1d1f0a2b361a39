"""Peer test: LlamaIndex's ``tests/callbacks/test_token_counter_cache_tokens.py``.

Source: run-llama/llama_index,
``llama-index-core/tests/callbacks/test_token_counter_cache_tokens.py`` (read at commit
a3f3f25, newer than the pinned llama-index-core 0.14.25, whose sdist ships no tests).
Upstream calls ``get_tokens_from_response(response)``; the same responses are delivered
here as the end of a chat call, and the handler's prompt/completion counts are checked,
for ``TokenCountingHandler`` and ``TokenwardCallbackHandler(Accountant())``.

Cached prompt tokens are billed: Anthropic's ``input_tokens`` excludes them, OpenAI's
``prompt_tokens`` and Gemini's ``prompt_token_count`` already include them.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.llms import ChatMessage

from tests.peer._llama_index import IMPLEMENTATIONS, token_counting_handler, xfail_for

PINNED_PEER_READS_INPUT_ONLY = (
    "llama-index-core 0.14.25's get_tokens_from_response reads input_tokens alone; the "
    "upstream test is for its later fix"
)
ANTHROPIC_CACHE = [
    xfail_for(i, "llama_index", PINNED_PEER_READS_INPUT_ONLY) for i in IMPLEMENTATIONS
]


def counts(implementation: str, usage: dict) -> tuple[int, int]:
    """(prompt, completion) tokens the handler records for a chat call reporting ``usage``."""
    handler = token_counting_handler(implementation)
    response = SimpleNamespace(raw={"usage": usage}, additional_kwargs={})
    handler.on_event_end(
        CBEventType.LLM,
        payload={
            EventPayload.MESSAGES: [ChatMessage(role="user", content="hello")],
            EventPayload.RESPONSE: response,
        },
        event_id="call",
    )
    (event,) = handler.llm_token_counts
    return event.prompt_token_count, event.completion_token_count


@pytest.mark.parametrize("implementation", ANTHROPIC_CACHE)
def test_anthropic_cache_read_tokens_are_counted(implementation):
    """Mirrors ``TestAnthropicCacheTokens.test_cache_read_tokens_are_counted``."""
    usage = {"input_tokens": 3, "output_tokens": 120, "cache_read_input_tokens": 20000}
    assert counts(implementation, usage) == (20003, 120)


@pytest.mark.parametrize("implementation", ANTHROPIC_CACHE)
def test_anthropic_cache_creation_tokens_are_counted(implementation):
    """Mirrors ``TestAnthropicCacheTokens.test_cache_creation_tokens_are_counted``."""
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 1500}
    assert counts(implementation, usage)[0] == 1510


@pytest.mark.parametrize("implementation", ANTHROPIC_CACHE)
def test_anthropic_both_cache_fields_are_counted(implementation):
    """Mirrors ``TestAnthropicCacheTokens.test_both_cache_fields_are_counted``."""
    usage = {
        "input_tokens": 3,
        "output_tokens": 120,
        "cache_read_input_tokens": 20000,
        "cache_creation_input_tokens": 1500,
    }
    assert counts(implementation, usage)[0] == 21503


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_anthropic_null_cache_fields_are_zero(implementation):
    """Mirrors ``TestAnthropicCacheTokens.test_null_cache_fields_are_treated_as_zero``."""
    usage = {
        "input_tokens": 42,
        "output_tokens": 7,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
    }
    assert counts(implementation, usage)[0] == 42


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_anthropic_uncached_call_is_unchanged(implementation):
    """Mirrors ``TestAnthropicCacheTokens.test_uncached_anthropic_call_is_unchanged``."""
    assert counts(implementation, {"input_tokens": 100, "output_tokens": 50}) == (100, 50)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_openai_prompt_tokens_are_not_adjusted(implementation):
    """Mirrors ``TestProvidersThatAlreadyIncludeCache.test_openai_prompt_tokens_are_not_adjusted``."""
    usage = {
        "prompt_tokens": 5000,
        "completion_tokens": 200,
        "prompt_tokens_details": {"cached_tokens": 4864},
    }
    assert counts(implementation, usage) == (5000, 200)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_gemini_prompt_token_count_is_not_adjusted(implementation):
    """Mirrors ``TestProvidersThatAlreadyIncludeCache.test_gemini_prompt_token_count_is_not_adjusted``."""
    usage = {
        "prompt_token_count": 8000,
        "candidates_token_count": 300,
        "cached_content_token_count": 7500,
    }
    assert counts(implementation, usage) == (8000, 300)
