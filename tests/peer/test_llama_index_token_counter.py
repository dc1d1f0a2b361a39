"""Peer test: LlamaIndex's ``tests/callbacks/test_token_counter.py``.

Source: run-llama/llama_index, ``llama-index-core/tests/callbacks/test_token_counter.py``
(read at commit 14dd874; llama-index-core 0.14.25 is pinned here, and its sdist ships no
tests). Re-expressed, not copied: each test below names the upstream test it mirrors and
checks the same behaviour, for ``TokenCountingHandler`` and for
``TokenwardCallbackHandler(Accountant())`` (the only adapted line: the constructor).
"""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.callbacks.schema import CBEventType, EventPayload

from tests.peer._llama_index import IMPLEMENTATIONS, token_counting_handler

# an LLM/embedding payload as upstream builds it: a chunk, a formatted prompt and a response
PAYLOAD = {EventPayload.CHUNKS: ["one"], EventPayload.PROMPT: "two", EventPayload.RESPONSE: "three"}
EVENT_ID = "an event id"


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_on_event_start(implementation):
    """Mirrors ``test_on_event_start``: starts return the event id and count nothing."""
    handler = token_counting_handler(implementation)
    for event_type in (CBEventType.LLM, CBEventType.EMBEDDING):
        returned = handler.on_event_start(event_type, payload=dict(PAYLOAD), event_id=EVENT_ID)
        assert returned == EVENT_ID
    assert handler.llm_token_counts == [] and handler.embedding_token_counts == []


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_on_event_end(implementation):
    """Mirrors ``test_on_event_end``: an end event without a start is counted; a one-word
    prompt and a one-word response are 2 LLM tokens, a one-word chunk 1 embedding token."""
    handler = token_counting_handler(implementation)
    handler.on_event_end(CBEventType.LLM, payload=dict(PAYLOAD), event_id=EVENT_ID)
    assert (len(handler.llm_token_counts), len(handler.embedding_token_counts)) == (1, 0)
    handler.on_event_end(CBEventType.EMBEDDING, payload=dict(PAYLOAD), event_id=EVENT_ID)
    assert (len(handler.llm_token_counts), len(handler.embedding_token_counts)) == (1, 1)
    assert handler.embedding_token_counts[0].total_token_count == 1
    assert handler.llm_token_counts[0].total_token_count == 2
    assert handler.total_llm_token_count == 2
    assert handler.total_embedding_token_count == 1
