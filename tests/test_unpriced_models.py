"""An unknown model never breaks the host's call (issue 13, item 3).

The call runs; its event holds every token and cost NULL (never $0), with one warning per
model per process. Only a USD budget that applies needs a price: ``Budget(unpriced=...)``
decides (``"deny"`` by default, with an error naming the model and the fix; ``"tokens"``
skips the USD budget; ``price_as=`` prices the call as another model for that budget).
Token budgets are unaffected. The same in every adapter; nothing touches the network.
"""

from __future__ import annotations

import logging
import socket
from decimal import Decimal

import pytest
from langchain_core.prompts import ChatPromptTemplate
from llama_index.core.base.llms.types import LLMMetadata
from llama_index.core.llms import MockLLM

from tests.test_langchain_callbacks import make_model
from tokenward import UnpricedModelError
from tokenward.accountant import Accountant, _resolve
from tokenward.budgets import Budget, Budgets
from tokenward.catalog import Catalog
from tokenward.langchain import TokenwardCallbackHandler
from tokenward.ledger import SQLiteLedger
from tokenward.usage import Usage

UNKNOWN = "acme-llm-9"
MINI_CALL = Decimal("0.0000048")  # gpt-4o-mini: 12 in x $0.15/M + 5 out x $0.60/M


def chain_of(model):
    return ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | model


def invoke(chain, acc, **metadata):
    return chain.invoke(
        {"q": "hi"}, config={"callbacks": [TokenwardCallbackHandler(acc)], "metadata": metadata}
    )


class AcmeLLM(MockLLM):
    """A LlamaIndex LLM on a model no price list knows."""

    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(num_output=self.max_tokens or -1, model_name=UNKNOWN)

    def _generate_text(self, length: int) -> str:
        self.calls += 1
        return super()._generate_text(length)


# ----------------------------------------------------------------------------- recorded, cost NULL
def test_langchain_chain_on_an_unknown_model_runs_and_the_ledger_holds_tokens_and_null_cost(
    tmp_path, caplog, monkeypatch
):
    # the warning is once per model per process: forget earlier tests' warnings
    monkeypatch.setattr(_resolve, "_warned_unpriced", set())
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    acc = Accountant(ledger=ledger)
    model = make_model("ok", model_name=UNKNOWN)
    with caplog.at_level(logging.WARNING, logger="tokenward"):
        for _ in range(3):
            assert invoke(chain_of(model), acc, user_id="u1").content == "ok"
    assert model.counter["calls"] == 3
    acc.flush()
    events = list(ledger.events())
    assert len(events) == 3
    assert all(e.model == UNKNOWN and e.cost is None for e in events)
    assert all(e.usage == Usage(input=12, output=5) for e in events)
    # stored as unknown (NULL), not $0: summaries count them apart
    [row] = ledger.summary(by=["model"])
    assert row.unpriced_calls == 3 and row.cost == 0
    # one warning per model per process, naming the fix
    warnings = [r.getMessage() for r in caplog.records if UNKNOWN in r.getMessage()]
    assert len(warnings) == 1 and "catalog.register" in warnings[0]
    acc.close()


def test_llama_index_query_engine_on_an_unknown_model_runs_and_is_recorded_with_null_cost():
    from llama_index.core import Document, MockEmbedding, VectorStoreIndex

    from tokenward.llama_index import instrument

    acc = Accountant()
    llm = AcmeLLM(max_tokens=4)
    with instrument(acc, default_model=UNKNOWN):
        index = VectorStoreIndex.from_documents(
            [Document(text="Paris is the capital of France.")],
            embed_model=MockEmbedding(embed_dim=4),
        )
        answer = index.as_query_engine(llm=llm).query("Capital of France?")
    assert str(answer)
    assert llm.calls == 1
    chats = [e for e in acc.ledger.events() if e.kind != "embedding"]
    assert len(chats) == 1
    assert chats[0].model == UNKNOWN and chats[0].cost is None
    assert chats[0].usage.input > 0 and chats[0].usage.output > 0


def test_fallback_catalog_still_prices_unknown_names_at_the_fallback():
    catalog = Catalog.default()
    catalog.set_fallback("gpt-4o-mini")
    acc = Accountant(catalog=catalog)
    invoke(chain_of(make_model("ok", model_name=UNKNOWN)), acc)
    [event] = list(acc.ledger.events())
    assert event.model == UNKNOWN and event.cost == MINI_CALL


# ----------------------------------------------------------------------------- USD budgets
def test_usd_budget_denies_an_unpriced_call_by_default_naming_the_model_and_the_fix():
    budgets = Budgets(Budget("per-user", limit_usd="10", scope="user_id"), alert_sinks=())
    acc = Accountant(budgets=budgets)
    model = make_model("ok", model_name=UNKNOWN)
    with pytest.raises(UnpricedModelError) as info:
        invoke(chain_of(model), acc, user_id="u1")
    err = info.value
    assert err.model == UNKNOWN and err.budget == "per-user" and err.code == "unpriced-model"
    assert "price_as=" in str(err) and "unpriced='tokens'" in str(err)
    assert model.counter["calls"] == 0  # denied before the provider was called
    assert acc.pending_calls == 0 and acc.ledger.count() == 0


def test_unpriced_tokens_lets_the_call_through_and_token_budgets_still_count():
    budgets = Budgets(
        Budget("usd", limit_usd="10", unpriced="tokens"),
        Budget("tok", limit_tokens=1_000),
        alert_sinks=(),
    )
    acc = Accountant(budgets=budgets, expected_output_tokens=5)
    invoke(chain_of(make_model("ok", model_name=UNKNOWN)), acc)
    assert budgets.status("usd").spent == 0  # the USD budget does not apply to that call
    assert budgets.status("tok").spent == 17
    [event] = list(acc.ledger.events())
    assert event.cost is None


def test_price_as_prices_the_call_for_that_budget_only():
    budgets = Budgets(Budget("usd", limit_usd="10", price_as="gpt-4o-mini"), alert_sinks=())
    acc = Accountant(budgets=budgets)
    invoke(chain_of(make_model("ok", model_name=UNKNOWN)), acc)
    assert budgets.status("usd").spent == MINI_CALL
    [event] = list(acc.ledger.events())
    assert event.cost is None  # the event keeps the truth: its own price is unknown


def test_token_budgets_are_unaffected_by_unpriced_models():
    budgets = Budgets(Budget("tok", limit_tokens=30), alert_sinks=())
    acc = Accountant(budgets=budgets, expected_output_tokens=5)
    model = make_model("ok", model_name=UNKNOWN)
    invoke(chain_of(model), acc)
    from tokenward import BudgetExceededError

    with pytest.raises(BudgetExceededError):  # 17 spent; the next estimate does not fit
        invoke(chain_of(model), acc)
    assert model.counter["calls"] == 1


def test_budgeted_llm_follows_unpriced_too():
    from tokenward.llama_index import BudgetedLLM

    denied = Accountant(budgets=[Budget("usd", limit_usd="1")])
    llm = AcmeLLM(max_tokens=4)
    with pytest.raises(UnpricedModelError):
        BudgetedLLM(llm, denied).complete("hello")
    assert llm.calls == 0
    allowed = Accountant(budgets=[Budget("usd", limit_usd="1", unpriced="tokens")])
    BudgetedLLM(llm, allowed).complete("hello")
    assert llm.calls == 1
    [event] = list(allowed.ledger.events())
    assert event.model == UNKNOWN and event.cost is None


def test_tracked_embeddings_and_legacy_callback_record_unknown_models():
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from llama_index.core.callbacks import CallbackManager

    from tokenward.langchain import TrackedEmbeddings
    from tokenward.llama_index import TokenwardCallbackHandler as LegacyHandler

    acc = Accountant()
    TrackedEmbeddings(DeterministicFakeEmbedding(size=4), acc, model="acme-embed-2").embed_query(
        "hello"
    )
    handler = LegacyHandler(acc)
    llm = AcmeLLM(max_tokens=4, callback_manager=CallbackManager([handler]))
    llm.complete("hello")
    assert llm.calls == 1
    events = {e.model: e for e in acc.ledger.events()}
    assert set(events) == {"acme-embed-2", UNKNOWN}
    assert all(e.cost is None and e.usage.input > 0 for e in events.values())
    assert handler.total_cost == 0 and handler.total_llm_token_count > 0


# ----------------------------------------------------------------------------- offline
def test_no_network_connection_during_a_callback(monkeypatch):
    acc = Accountant(budgets=[Budget("usd", limit_usd="10", unpriced="tokens")])
    model = make_model("ok", model_name=UNKNOWN)
    invoke(chain_of(make_model("warm", model_name="gpt-4o-mini")), acc)  # imports, caches

    def refuse(*args, **kwargs):
        raise AssertionError("tokenward opened a network connection during a callback")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    invoke(chain_of(model), acc, user_id="u1")
    invoke(chain_of(make_model("ok", model_name="gpt-4o-mini")), acc, user_id="u1")
    assert acc.ledger.count() == 3
