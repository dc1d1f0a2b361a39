"""Peer test: LlamaIndex's ``tests/callbacks/test_token_budget.py``.

Source: run-llama/llama_index, ``llama-index-core/tests/callbacks/test_token_budget.py``
(read at commit 415e5df; ``token_budget=`` is in the pinned llama-index-core 0.14.25,
whose sdist ships no tests). Re-expressed, not copied: each test names the upstream test
it mirrors, for ``TokenCountingHandler`` and ``TokenwardCallbackHandler(Accountant())``.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.callbacks import CallbackManager
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.llms import CompletionResponse

from tests.peer._llama_index import IMPLEMENTATIONS, token_counting_handler


def five_tokens(text: str) -> list[int]:
    """A tokenizer that sees five tokens in any text."""
    return [1, 2, 3, 4, 5]


def completion_end(prompt: str, response: object) -> dict:
    return {EventPayload.PROMPT: prompt, EventPayload.COMPLETION: response}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_token_budget_enforcement(implementation):
    """Mirrors ``test_token_budget_enforcement``: with a 15-token budget, a first 10-token
    call passes and the second raises a ``ValueError`` naming the limit when it ends."""
    handler = token_counting_handler(implementation, tokenizer=five_tokens, token_budget=15)
    response = CompletionResponse(text="generated text")
    handler.on_event_end(
        event_type=CBEventType.LLM, payload=completion_end("input prompt", response)
    )
    with pytest.raises(ValueError) as raised:
        handler.on_event_end(
            event_type=CBEventType.LLM, payload=completion_end("input prompt", response)
        )
    assert "Token budget exceeded" in str(raised.value)
    assert "Limit: 15" in str(raised.value)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_token_budget_via_callback_manager(implementation):
    """Mirrors ``test_token_budget_via_callback_manager``: the same through a
    ``CallbackManager``, with a response object that reports no usage."""
    handler = token_counting_handler(implementation, tokenizer=five_tokens, token_budget=15)
    manager = CallbackManager([handler])
    response = SimpleNamespace(raw=None, additional_kwargs={})
    manager.on_event_end(CBEventType.LLM, payload=completion_end("p", response))
    with pytest.raises(ValueError):
        manager.on_event_end(CBEventType.LLM, payload=completion_end("p", response))
