"""An unknown model is never silently dropped by an adapter that can raise.

Policy (tokenward.integrations._common): budget denials and unknown models reach the
caller before the model is called; every other adapter error is logged and swallowed.
"""

from __future__ import annotations

import logging

import pytest

from tokenward import Accountant, Catalog, UnknownModelError
from tokenward.integrations._common import swallow_internal_errors


def test_guard_lets_only_the_user_facing_errors_through(caplog):
    log = logging.getLogger("tokenward.test")
    with pytest.raises(UnknownModelError), swallow_internal_errors(log):
        raise UnknownModelError("nope")
    with caplog.at_level(logging.ERROR, logger="tokenward.test"):
        with swallow_internal_errors(log, "step"):
            raise RuntimeError("bug")
    assert "internal error in tokenward (step)" in caplog.text


def test_langchain_tracked_embeddings_raise_for_unknown_model_before_embedding():
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from tokenward.langchain import TrackedEmbeddings

    calls = []

    class Counting(DeterministicFakeEmbedding):
        def embed_documents(self, texts):
            calls.append(texts)
            return super().embed_documents(texts)

    acct = Accountant()
    emb = TrackedEmbeddings(Counting(size=4), acct, model="no-such-embedding-model")
    with pytest.raises(UnknownModelError, match="no-such-embedding-model"):
        emb.embed_documents(["a", "b"])
    assert calls == []
    assert acct.ledger.count() == 0

    fallback = Accountant(catalog=Catalog.default())
    fallback.catalog.set_fallback("text-embedding-3-small")
    TrackedEmbeddings(Counting(size=4), fallback, model="no-such-embedding-model").embed_documents(
        ["a"]
    )
    assert len(calls) == 1 and fallback.ledger.count() == 1


def test_llama_index_legacy_callback_raises_for_unknown_model_before_the_llm_runs():
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.llms import MockLLM

    from tokenward.llama_index import TokenwardCallbackHandler

    calls = []

    class Counting(MockLLM):
        def _generate_text(self, length):  # runs inside complete(), after the start event
            calls.append(length)
            return super()._generate_text(length)

    acct = Accountant()
    handler = TokenwardCallbackHandler(acct, default_model="no-such-model-x")
    llm = Counting(max_tokens=8, callback_manager=CallbackManager([handler]))
    with pytest.raises(UnknownModelError, match="no-such-model-x"):
        llm.complete("hello")
    assert calls == []
    assert acct.ledger.count() == 0
