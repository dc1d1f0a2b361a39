"""Issue 14 item 2: enforcement errors follow the budget's fail_mode, in every adapter.

A real Redis budget store is killed by the test. With ``fail_mode="closed"`` every adapter
that can stop a call (LangChain handler sync and async, TrackedEmbeddings, the agent
middleware, LlamaIndex BudgetedLLM and legacy callback) denies it with
``BudgetStoreUnavailableError`` before the model runs (before the fix: 10 of 10 calls through
the LangChain handler reached the model). With ``"open"`` the calls run and their spend is
journaled, then reconciled once Redis is back. Internal errors that have nothing to do with
enforcement are logged once per kind and the call is still recorded.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from langchain.agents import create_agent
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from llama_index.core.base.llms.types import LLMMetadata
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms import MockLLM

from tests._faults import RedisProcess
from tests.test_langchain_callbacks import make_model
from tests.test_langchain_middleware import agent_model, get_weather
from tokenward import BudgetStoreUnavailableError
from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets, RedisBudgetStore
from tokenward.langchain import TokenBudgetMiddleware, TokenwardCallbackHandler, TrackedEmbeddings

pytestmark = pytest.mark.slow


class CountingLLM(MockLLM):
    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(num_output=self.max_tokens or -1, model_name="gpt-4o-mini")

    def _generate_text(self, length: int) -> str:
        self.calls += 1
        return super()._generate_text(length)


class CountingEmbeddings(DeterministicFakeEmbedding):
    calls: int = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return super().embed_documents(texts)


def accountant(server: RedisProcess, mode: str) -> Accountant:
    store = RedisBudgetStore(server.url, socket_timeout=1.0)
    budgets = Budgets(
        Budget("per-user", limit_usd="10", scope="user_id"),
        store=store,
        fail_mode=mode,  # type: ignore[arg-type]
        retry_interval=timedelta(0),
        alert_sinks=(),
    )
    return Accountant(budgets=budgets)


def chain(model):
    return ChatPromptTemplate.from_messages([("human", "{q}")]) | model


@pytest.fixture
def down(redis_process: RedisProcess):
    redis_process.stop()
    yield redis_process
    redis_process.start()


def test_fail_closed_langchain_handler_denies_every_call_before_the_model(down):
    acc = accountant(down, "closed")
    model = make_model("ok")
    handler = TokenwardCallbackHandler(acc, user_id="u1")
    for _ in range(10):
        with pytest.raises(BudgetStoreUnavailableError, match="fail_mode='closed'"):
            chain(model).invoke({"q": "hi"}, config={"callbacks": [handler]})
    assert model.counter["calls"] == 0
    assert acc.pending_calls == 0 and acc.ledger.count() == 0


async def test_fail_closed_async_chain_is_denied_before_the_model(down):
    acc = accountant(down, "closed")
    model = make_model("ok")
    with pytest.raises(BudgetStoreUnavailableError):
        await chain(model).ainvoke(
            {"q": "hi"}, config={"callbacks": [TokenwardCallbackHandler(acc, user_id="u1")]}
        )
    assert model.counter["calls"] == 0


def test_fail_closed_embeddings_and_middleware_are_denied_before_the_model(down):
    acc = accountant(down, "closed")
    inner = CountingEmbeddings(size=4)
    with pytest.raises(BudgetStoreUnavailableError):
        TrackedEmbeddings(inner, acc, model="text-embedding-3-small", user_id="u1").embed_documents(
            ["a", "b"]
        )
    assert inner.calls == 0
    model = agent_model()
    agent = create_agent(
        model, tools=[get_weather], middleware=[TokenBudgetMiddleware(acc, user_id="u1")]
    )
    with pytest.raises(BudgetStoreUnavailableError):
        agent.invoke({"messages": [HumanMessage("Weather in Oslo?")]})
    assert model.counter["calls"] == 0


def test_fail_closed_llama_index_budgeted_llm_and_legacy_callback_deny(down):
    from tokenward.llama_index import BudgetedLLM
    from tokenward.llama_index import TokenwardCallbackHandler as LegacyHandler

    acc = accountant(down, "closed")
    llm = CountingLLM(max_tokens=4)
    with pytest.raises(BudgetStoreUnavailableError):
        BudgetedLLM(llm, acc, user_id="u1").complete("hello")
    legacy = CountingLLM(max_tokens=4, callback_manager=CallbackManager([LegacyHandler(acc)]))
    with pytest.raises(BudgetStoreUnavailableError):
        legacy.complete("hello")
    assert llm.calls == 0 and legacy.calls == 0


def test_llama_index_instrumentation_cannot_deny_so_it_records_and_says_so(down, caplog):
    from tokenward.llama_index import instrument

    acc = accountant(down, "closed")
    llm = CountingLLM(max_tokens=4)
    with instrument(acc, user_id="u1"), caplog.at_level(logging.WARNING):
        llm.complete("hello")
    assert llm.calls == 1
    assert "BudgetedLLM" in caplog.text
    assert acc.ledger.count() == 1


def test_fail_open_calls_run_spend_is_journaled_then_reconciled(redis_process: RedisProcess):
    acc = accountant(redis_process, "open")
    budgets = acc.budgets
    assert budgets is not None
    model = make_model("ok")
    handler = TokenwardCallbackHandler(acc, user_id="u1")
    redis_process.stop()
    try:
        for _ in range(3):
            chain(model).invoke({"q": "hi"}, config={"callbacks": [handler]})
        assert model.counter["calls"] == 3
        assert budgets.journal_size == 3
    finally:
        redis_process.start()
    assert budgets.reconcile() == 3
    status = budgets.status("per-user", user_id="u1")
    assert status.calls == 3 and status.spent == 3 * Decimal("0.0000048")
    assert acc.ledger.count() == 3


def test_internal_errors_are_logged_once_per_kind_and_every_call_is_still_recorded(caplog):
    acc = Accountant()
    # a provider reporting a count no store can hold: rejected at the boundary, not stored
    model = make_model("ok")
    model.usage = {"input_tokens": 2**64, "output_tokens": 5, "total_tokens": 2**64 + 5}
    handler = TokenwardCallbackHandler(acc)
    with caplog.at_level(logging.ERROR, logger="tokenward"):
        for _ in range(4):
            assert chain(model).invoke({"q": "hi"}, config={"callbacks": [handler]}).content
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "UsageParseError" in errors[0].getMessage()
    events = list(acc.ledger.events())
    assert len(events) == 4
    assert all(e.estimated and e.usage.input < 2**63 for e in events)
