"""The LangChain adapters end to end with the real core (Accountant, catalog, counting,
cost, ledger, budgets): what a user sees in the ledger and in budget status."""

from __future__ import annotations

from decimal import Decimal

import pytest
from langchain.agents import create_agent
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableParallel

from tests.test_langchain_callbacks import UsageChatModel, make_model
from tests.test_langchain_middleware import agent_model, get_weather
from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets
from tokenward.counting import get_counter
from tokenward.errors import BudgetExceededError
from tokenward.integrations.langchain import TrackedEmbeddings
from tokenward.langchain import (
    AsyncTokenwardCallbackHandler,
    TokenBudgetMiddleware,
    TokenwardCallbackHandler,
    tracking,
)
from tokenward.usage import Usage

MINI_CALL = Decimal("0.0000048")  # gpt-4o-mini: 12 in x $0.15/M + 5 out x $0.60/M


def events(acc: Accountant):
    acc.flush()
    return list(acc.ledger.events())


def chain_of(model):
    return ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | model


def test_event_in_ledger_with_exact_cost_and_dimensions():
    acc = Accountant()
    chain_of(make_model("Paris.")).invoke(
        {"q": "Capital of France?"},
        config={
            "callbacks": [TokenwardCallbackHandler(acc, agent="geo")],
            "metadata": {"user_id": "u1", "conversation_id": "c9"},
            "tags": ["team:search"],
        },
    )
    [ev] = events(acc)
    assert ev.model == "gpt-4o-mini" and ev.provider == "openai"
    assert ev.usage == Usage(input=12, output=5)
    assert ev.cost == MINI_CALL
    assert (ev.user_id, ev.conversation_id, ev.agent) == ("u1", "c9", "geo")
    assert ev.tags == {"team": "search"}
    assert ev.status == "ok" and ev.estimated is False and ev.kind == "chat"
    assert ev.parent_id is not None


def test_hard_budget_denies_before_the_model_runs():
    budgets = Budgets(Budget("per-user", limit_tokens=100, window="day", scope="user_id"))
    acc = Accountant(budgets=budgets)
    model = make_model("ok")
    chain = chain_of(model.bind(max_tokens=40))
    handler = TokenwardCallbackHandler(acc)
    calls = 0
    with pytest.raises(BudgetExceededError) as info:
        for _ in range(20):
            chain.invoke(
                {"q": "hi"}, config={"callbacks": [handler], "metadata": {"user_id": "u1"}}
            )
            calls += 1
    err = info.value
    assert err.budget == "per-user" and err.scope_key == "user_id=u1"
    assert model.counter["calls"] == calls == len(events(acc))
    assert err.spent == 17 * calls
    assert err.spent + err.attempted > 100
    status = budgets.status("per-user", user_id="u1")
    assert status.spent == 17 * calls and status.reserved == 0
    # another user has their own counter
    chain.invoke({"q": "hi"}, config={"callbacks": [handler], "metadata": {"user_id": "u2"}})
    assert model.counter["calls"] == calls + 1


async def test_async_denial_and_usage():
    budgets = Budgets(Budget("tiny", limit_tokens=5, window="day"))
    acc = Accountant(budgets=budgets)
    model = make_model("ok")
    with pytest.raises(BudgetExceededError):
        await model.ainvoke("hello", config={"callbacks": [AsyncTokenwardCallbackHandler(acc)]})
    assert model.counter["calls"] == 0 and events(acc) == []


def test_stream_without_usage_is_estimated_from_counted_text():
    acc = Accountant()
    model = make_model("one two three four", stream_usage=False)
    list(model.stream("count", config={"callbacks": [TokenwardCallbackHandler(acc)]}))
    [ev] = events(acc)
    counter = get_counter("gpt-4o-mini")
    assert ev.estimated is True
    assert ev.usage.output == counter.count_text("one two three four")
    assert ev.usage.input == counter.count_messages([{"role": "user", "content": "count"}])


def test_failed_call_is_recorded_as_error_and_reservation_released():
    class Boom(UsageChatModel):
        def _generate(self, *a, **k):
            raise TimeoutError("upstream timeout")

    budgets = Budgets(Budget("daily", limit_usd="1", window="day"))
    acc = Accountant(budgets=budgets)
    with pytest.raises(TimeoutError):
        Boom(messages=iter([])).invoke("hi", config={"callbacks": [TokenwardCallbackHandler(acc)]})
    [ev] = events(acc)
    assert ev.status == "error" and "upstream timeout" in ev.error
    assert ev.cost == 0
    st = budgets.status("daily")
    assert st.reserved == 0 and st.spent == 0


def test_batch_and_parallel_totals_are_exact():
    acc = Accountant()
    chain = chain_of(make_model("ok"))
    handler = TokenwardCallbackHandler(acc, user_id="batch")
    chain.batch(
        [{"q": str(i)} for i in range(40)], config={"callbacks": [handler], "max_concurrency": 8}
    )
    RunnableParallel(a=chain, b=chain).invoke({"q": "x"}, config={"callbacks": [handler]})
    [row] = acc.ledger.summary(by=["user_id"])
    assert row.calls == 42 and row.cost == 42 * MINI_CALL
    assert row.input == 42 * 12 and row.output == 42 * 5


def test_tracking_gives_live_totals_for_everything_inside():
    acc = Accountant()
    chain = chain_of(make_model("ok"))
    with tracking(acc, user_id="u5", session_id="s1") as t:
        chain.invoke({"q": "a"})
        chain.batch([{"q": "b"}, {"q": "c"}])
        with tracking(agent="inner") as inner:
            chain.invoke({"q": "d"})
    chain.invoke({"q": "outside"})
    assert (t.calls, t.cost, t.usage) == (4, 4 * MINI_CALL, Usage(input=48, output=20))
    assert (inner.calls, inner.cost) == (1, MINI_CALL)
    evs = events(acc)
    assert len(evs) == 4  # the call outside the block was not tracked
    assert [e.user_id for e in evs] == ["u5"] * 4
    assert [e.agent for e in evs] == [None, None, None, "inner"]


def test_tracked_embeddings():
    acc = Accountant()
    emb = TrackedEmbeddings(
        DeterministicFakeEmbedding(size=8), acc, model="text-embedding-3-small", user_id="u1"
    )
    vecs = emb.embed_documents(["hello world", "tokens cost money"])
    assert len(vecs) == 2 and len(vecs[0]) == 8
    emb.embed_query("hello")
    counter = get_counter("text-embedding-3-small")
    first, second = events(acc)
    assert first.kind == "embedding" and first.estimated is True
    assert first.usage == Usage(
        input=counter.count_text("hello world") + counter.count_text("tokens cost money"),
        estimated=True,
    )
    assert first.cost == Decimal(first.usage.input) * Decimal("0.02") / 1_000_000
    assert second.usage.input == counter.count_text("hello") and second.user_id == "u1"


async def test_tracked_embeddings_async_and_denial():
    budgets = Budgets(Budget("emb", limit_tokens=3, window="day"))
    acc = Accountant(budgets=budgets)
    inner = DeterministicFakeEmbedding(size=4)
    emb = TrackedEmbeddings(inner, acc, model="text-embedding-3-small")
    await emb.aembed_query("hi")
    with pytest.raises(BudgetExceededError):
        await emb.aembed_documents(["a much longer text than the budget allows"])
    assert len(events(acc)) == 1


def test_agent_middleware_degrades_max_tokens_first():
    # gpt-4o's estimate (1,024 expected output tokens, $0.01024) does not fit $0.005,
    # but ~480 output tokens do: the degradation helper lowers max_tokens on gpt-4o
    budgets = Budgets(Budget("per-conversation", limit_usd="0.005", window="conversation"))
    acc = Accountant(budgets=budgets)
    big = agent_model(model_name="gpt-4o")
    small = agent_model(model_name="gpt-4o-mini")
    agent = create_agent(
        big, tools=[get_weather], middleware=[TokenBudgetMiddleware(acc, fallback_model=small)]
    )
    out = agent.invoke(
        {"messages": [HumanMessage("Weather in Oslo?")]},
        config={"configurable": {"thread_id": "t1"}},
    )
    assert out["messages"][-1].content == "It is sunny in Oslo."
    assert big.counter["calls"] == 2 and small.counter["calls"] == 0
    assert 256 <= big.counter["max_tokens"] < 500
    assert [e.model for e in events(acc)] == ["gpt-4o", "gpt-4o"]
    assert out["tokenward"]["fallbacks"] == 2


def test_agent_middleware_with_real_budget_and_fallback():
    # gpt-4o cannot fit even 1,024 output tokens (min_output_tokens): gpt-4o-mini can
    budgets = Budgets(Budget("per-conversation", limit_usd="0.005", window="conversation"))
    acc = Accountant(budgets=budgets)
    big = agent_model(model_name="gpt-4o")
    small = agent_model(model_name="gpt-4o-mini")
    agent = create_agent(
        big,
        tools=[get_weather],
        middleware=[TokenBudgetMiddleware(acc, fallback_model=small, min_output_tokens=1024)],
    )
    out = agent.invoke(
        {"messages": [HumanMessage("Weather in Oslo?")]},
        config={"configurable": {"thread_id": "t1"}},
    )
    assert out["messages"][-1].content == "It is sunny in Oslo."
    assert big.counter["calls"] == 0 and small.counter["calls"] == 2
    assert small.counter["max_tokens"] == 1024
    evs = events(acc)
    assert [e.model for e in evs] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert [e.conversation_id for e in evs] == ["t1", "t1"]
    assert evs[0].tool_names == ("get_weather",) and evs[0].tool_calls == 1
    totals = dict(out["tokenward"])
    assert Decimal(totals.pop("cost_usd")) == 2 * MINI_CALL
    assert totals == {
        "calls": 2,
        "input_tokens": 24,
        "output_tokens": 10,
        "fallbacks": 2,
        "estimated": False,
    }

    # with nothing to degrade to, the same budget stops the agent before the model runs
    agent = create_agent(
        big, tools=[get_weather], middleware=[TokenBudgetMiddleware(acc, degrade=False)]
    )
    with pytest.raises(BudgetExceededError):
        agent.invoke(
            {"messages": [HumanMessage("Weather?")]}, config={"configurable": {"thread_id": "t2"}}
        )
    assert big.counter["calls"] == 0


def test_agent_middleware_switches_to_fallback_near_the_limit():
    # each gpt-4o call costs $0.000080 here (8 %); from 30 % utilization on, use gpt-4o-mini
    budgets = Budgets(Budget("daily", limit_usd="0.001", window="day", scope="user_id"))
    acc = Accountant(budgets=budgets)
    big = agent_model(model_name="gpt-4o")
    small = agent_model(model_name="gpt-4o-mini")
    mw = TokenBudgetMiddleware(acc, fallback_model=small, degrade_at=0.3, max_output_tokens=10)
    agent = create_agent(big, tools=[get_weather], middleware=[mw])
    models = []
    for i in range(4):
        agent.invoke(
            {"messages": [HumanMessage(f"Weather {i}?")]}, config={"metadata": {"user_id": "u1"}}
        )
        models.append((big.counter["calls"], small.counter["calls"]))
    assert models == [(2, 0), (4, 0), (4, 2), (4, 4)]
    st = budgets.status("daily", user_id="u1")
    assert st.spent == 4 * Decimal("0.00008") + 4 * MINI_CALL


def test_completion_llm_and_provider_usage_shapes():
    from langchain_core.language_models.fake import FakeListLLM
    from langchain_core.messages import AIMessage

    acc = Accountant()
    handler = TokenwardCallbackHandler(acc, default_model="gpt-3.5-turbo")
    FakeListLLM(responses=["four"]).invoke("2 + 2 =", config={"callbacks": [handler]})
    [ev] = events(acc)
    assert ev.kind == "completion" and ev.model == "gpt-3.5-turbo"
    assert ev.estimated is True  # FakeListLLM reports nothing: counted locally
    assert ev.usage.output == get_counter("gpt-3.5-turbo").count_text("four")

    # an Anthropic-style payload left in response_metadata (no usage_metadata): the core
    # parser adds the cache tokens Anthropic leaves out of input_tokens
    class AnthropicLike(UsageChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
            msg = result.generations[0].message
            msg.usage_metadata = None
            msg.response_metadata = {
                "model": "claude-sonnet-4-5",
                "usage": {
                    "input_tokens": 100,
                    "output_tokens": 20,
                    "cache_read_input_tokens": 900,
                    "cache_creation_input_tokens": 0,
                },
            }
            return result

    acc = Accountant()
    model = AnthropicLike(messages=iter([AIMessage("hi")]), model_name="claude-sonnet-4-5")
    model.invoke("hello", config={"callbacks": [TokenwardCallbackHandler(acc)]})
    [ev] = events(acc)
    assert ev.model.startswith("claude-sonnet-4-5")
    assert ev.usage == Usage(input=1000, output=20, cache_read=900)
    assert ev.estimated is False


def test_stream_cut_after_usage_keeps_the_paid_tokens():
    from langchain_core.messages import AIMessageChunk
    from langchain_core.outputs import ChatGenerationChunk

    class CutStream(UsageChatModel):
        def _stream(self, messages, stop=None, run_manager=None, **kwargs):
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="partial",
                    usage_metadata={"input_tokens": 30, "output_tokens": 7, "total_tokens": 37},
                )
            )
            raise ConnectionError("connection reset")

    budgets = Budgets(Budget("daily", limit_usd="1", window="day"))
    acc = Accountant(budgets=budgets)
    with pytest.raises(ConnectionError):
        list(
            CutStream(messages=iter([])).stream(
                "hi", config={"callbacks": [TokenwardCallbackHandler(acc)]}
            )
        )
    [ev] = events(acc)
    assert ev.status == "error" and ev.usage == Usage(input=30, output=7)
    assert ev.cost == Decimal(30) * Decimal("0.15") / 10**6 + Decimal(7) * Decimal("0.60") / 10**6
    st = budgets.status("daily")
    assert st.reserved == 0 and st.spent == ev.cost
