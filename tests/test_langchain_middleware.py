"""TokenBudgetMiddleware driven by langchain>=1 create_agent and LangChain's fake chat models."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

from tests.test_langchain_callbacks import USAGE, FakeAccountant, UsageChatModel
from tokenward.errors import BudgetExceededError
from tokenward.langchain import TokenBudgetMiddleware, TokenwardCallbackHandler, tracking
from tokenward.usage import Usage


class EventAccountant(FakeAccountant):
    def settle(self, run_id, usage, **kw):
        super().settle(run_id, usage, **kw)
        u = usage or Usage(input=3, output=4, estimated=True)
        return SimpleNamespace(usage=u, cost=Decimal("0.0015"), estimated=u.estimated)


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


def agent_model(**kw) -> UsageChatModel:
    def script():  # fresh message objects each turn (LangChain sets ids on them)
        for i in range(10):
            yield AIMessage(
                content="",
                tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": f"call_{i}"}],
            )
            yield AIMessage(content="It is sunny in Oslo.")

    return UsageChatModel(messages=script(), usage=dict(USAGE), **kw)


def test_agent_calls_are_preflighted_settled_and_totalled_per_thread():
    acc = EventAccountant()
    model = agent_model()
    agent = create_agent(
        model,
        tools=[get_weather],
        middleware=[TokenBudgetMiddleware(acc, agent="weather-bot")],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "t1"}, "metadata": {"user_id": "u1"}}
    out = agent.invoke({"messages": [HumanMessage("Weather in Oslo?")]}, config=config)
    assert out["messages"][-1].content == "It is sunny in Oslo."
    assert model.counter["calls"] == 2
    assert len(acc.preflights) == 2 and len(acc.settles) == 2
    first, second = acc.preflights
    assert first["model"] == "gpt-4o-mini"
    assert first["dims"] == {"agent": "weather-bot", "user_id": "u1", "conversation_id": "t1"}
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert [m.role for m in second["messages"]] == ["user", "assistant", "tool"]
    assert acc.settles[0]["tool_names"] == ("get_weather",)
    assert acc.settles[1]["tool_names"] == ()
    assert all(s["usage"] == Usage(input=12, output=5) for s in acc.settles)
    assert out["tokenward"] == {
        "calls": 2,
        "input_tokens": 24,
        "output_tokens": 10,
        "fallbacks": 0,
        "cost_usd": "0.0030",
        "estimated": False,
    }
    # the same thread keeps adding up
    out = agent.invoke({"messages": [HumanMessage("And tomorrow?")]}, config=config)
    assert out["tokenward"]["calls"] == 4
    assert out["tokenward"]["cost_usd"] == "0.0060"


def test_denied_budget_stops_the_agent_before_the_model_runs():
    acc = EventAccountant(deny_users={"u-broke"})
    model = agent_model()
    agent = create_agent(model, tools=[get_weather], middleware=[TokenBudgetMiddleware(acc)])
    with pytest.raises(BudgetExceededError):
        agent.invoke(
            {"messages": [HumanMessage("hi")]}, config={"metadata": {"user_id": "u-broke"}}
        )
    assert model.counter["calls"] == 0


def test_denied_budget_falls_back_to_cheaper_model():
    class DenyBigModel(EventAccountant):
        def preflight(self, run_id, model, **kw):
            if model == "gpt-4o":
                raise BudgetExceededError(
                    "too expensive",
                    budget="daily",
                    scope_key="user_id=u1",
                    unit="usd",
                    limit=Decimal(1),
                    spent=Decimal(1),
                    reserved=Decimal(0),
                    attempted=Decimal(1),
                )
            return super().preflight(run_id, model, **kw)

    acc = DenyBigModel()
    big = agent_model(model_name="gpt-4o")
    small = agent_model(model_name="gpt-4o-mini")
    mw = TokenBudgetMiddleware(acc, fallback_model=small)
    agent = create_agent(big, tools=[get_weather], middleware=[mw])
    out = agent.invoke({"messages": [HumanMessage("Weather?")]})
    assert out["messages"][-1].content == "It is sunny in Oslo."
    assert big.counter["calls"] == 0
    assert small.counter["calls"] == 2
    assert [p["model"] for p in acc.preflights] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert out["tokenward"]["fallbacks"] == 2


async def test_async_agent_and_no_double_counting_with_tracking():
    acc = EventAccountant()
    model = agent_model()
    agent = create_agent(model, tools=[get_weather], middleware=[TokenBudgetMiddleware(acc)])
    with tracking(acc, user_id="u9"):
        out = await agent.ainvoke({"messages": [HumanMessage("Weather?")]})
    assert out["messages"][-1].content == "It is sunny in Oslo."
    # the middleware accounted both calls; the tracking handler skipped them
    assert len(acc.preflights) == 2 and len(acc.settles) == 2
    assert all(
        p["dims"].get("user_id") is None for p in acc.preflights
    )  # set by accountant's track


def test_callback_handler_alone_accounts_an_agent():
    acc = FakeAccountant()
    model = agent_model()
    agent = create_agent(model, tools=[get_weather])
    agent.invoke(
        {"messages": [HumanMessage("Weather?")]},
        config={"callbacks": [TokenwardCallbackHandler(acc)], "metadata": {"user_id": "u3"}},
    )
    assert len(acc.settles) == 2
    assert acc.settles[0]["tool_names"] == ("get_weather",)
    assert {p["dims"]["user_id"] for p in acc.preflights} == {"u3"}


def words(messages):
    return sum(len(str(m.content).split()) + 1 for m in messages)


def old_history(turns: int) -> list:
    history = []
    for i in range(turns):
        history += [
            HumanMessage(f"old question {i}", id=f"h{i}"),
            AIMessage(f"old answer {i}", id=f"a{i}"),
        ]
    return history


def test_trim_state_option_trims_the_stored_conversation():
    from tokenward.langchain import HistoryTrimmer

    acc = EventAccountant()
    trimmer = HistoryTrimmer(12, token_counter=words, include_system=False)
    agent = create_agent(
        agent_model(),
        tools=[get_weather],
        middleware=[TokenBudgetMiddleware(acc, trimmer=trimmer, trim_state=True)],
    )
    out = agent.invoke({"messages": [*old_history(10), HumanMessage("Weather in Oslo?", id="q")]})
    first_prompt = acc.preflights[0]["messages"]
    assert [m.text for m in first_prompt] == ["old question 9", "old answer 9", "Weather in Oslo?"]
    # the second model call (after the tool ran) is trimmed again: it starts on the question
    second_prompt = acc.preflights[1]["messages"]
    assert [m.role for m in second_prompt] == ["user", "assistant", "tool"]
    ids = [m.id for m in out["messages"]]
    assert ids[0] == "q" and len(ids) == 4  # the older turns were deleted from the state
    assert out["messages"][-1].content == "It is sunny in Oslo."


def test_trimmer_trims_the_model_request_and_keeps_the_state():
    from tokenward.langchain import HistoryTrimmer

    acc = EventAccountant()
    trimmer = HistoryTrimmer(12, token_counter=words, include_system=False)
    agent = create_agent(
        agent_model(),
        tools=[get_weather],
        middleware=[TokenBudgetMiddleware(acc, trimmer=trimmer)],
    )
    history = [*old_history(10), HumanMessage("Weather in Oslo?", id="q")]
    out = agent.invoke({"messages": history})
    first_prompt = acc.preflights[0]["messages"]
    assert [m.text for m in first_prompt] == ["old question 9", "old answer 9", "Weather in Oslo?"]
    assert [m.role for m in acc.preflights[1]["messages"]] == ["user", "assistant", "tool"]
    assert [m.id for m in out["messages"][:21]] == [m.id for m in history]
    assert len(out["messages"]) == 21 + 3  # tool call, tool result, answer


class RecordingModel(UsageChatModel):
    """Records the messages of every call it receives."""

    seen: list = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def test_sixty_turns_checkpoint_keeps_everything_while_the_model_sees_a_trimmed_list():
    from tokenward import Accountant
    from tokenward.langchain import HistoryTrimmer

    acc = Accountant()
    model = RecordingModel(
        messages=iter([AIMessage(f"Answer number {i}, in a few words.") for i in range(60)]),
        usage=dict(USAGE),
    )
    trimmer = HistoryTrimmer(200, model="gpt-4o-mini")
    saver = InMemorySaver()
    agent = create_agent(
        model,
        system_prompt="You are brief.",
        middleware=[TokenBudgetMiddleware(acc, trimmer=trimmer)],
        checkpointer=saver,
    )
    config = {"configurable": {"thread_id": "long-chat"}}
    for turn in range(60):
        agent.invoke({"messages": [HumanMessage(f"Question number {turn}?")]}, config=config)

    # the checkpoint (a real LangGraph checkpointer) holds the whole conversation
    stored = saver.get_tuple(config).checkpoint["channel_values"]["messages"]
    assert len(stored) == 120
    assert [m.content for m in stored[::2]] == [f"Question number {t}?" for t in range(60)]
    assert len(agent.get_state(config).values["messages"]) == 120
    # the model saw a trimmed list: the newest turns within 200 tokens, ending on the question
    last = model.seen[-1]
    assert last[0].type == "system" and last[-1].content == "Question number 59?"
    assert 3 < len(last) < 120
    counted = [m for m in last if m.type != "system"]
    assert trimmer.trim(counted) == counted  # already within the budget
    assert len(model.seen) == 60 and max(len(s) for s in model.seen) < 120
    events = list(acc.ledger.events())
    assert len(events) == 60 and all(e.model == "gpt-4o-mini" for e in events)


async def test_async_agent_trims_the_request_and_keeps_the_state():
    from tokenward.langchain import HistoryTrimmer

    acc = EventAccountant()
    trimmer = HistoryTrimmer(12, token_counter=words, include_system=False)
    agent = create_agent(
        agent_model(), tools=[get_weather], middleware=[TokenBudgetMiddleware(acc, trimmer=trimmer)]
    )
    history = [*old_history(10), HumanMessage("Weather in Oslo?", id="q")]
    out = await agent.ainvoke({"messages": history})
    assert [m.text for m in acc.preflights[0]["messages"]] == [
        "old question 9",
        "old answer 9",
        "Weather in Oslo?",
    ]
    assert len(out["messages"]) == 21 + 3
