"""HistoryTrimmer in real LangChain pipelines."""

from __future__ import annotations

from operator import itemgetter

import pytest
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    trim_messages,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnablePassthrough
from langchain_core.runnables.history import RunnableWithMessageHistory

from tests.test_langchain_callbacks import FakeAccountant, make_model
from tokenward.counting import get_counter
from tokenward.errors import ConfigurationError, ContextBudgetError
from tokenward.langchain import HistoryTrimmer, TokenwardCallbackHandler


def words(messages: list[BaseMessage]) -> int:
    """A list counter: one token per word, 1 per message overhead."""
    return sum(len(str(m.content).split()) + 1 for m in messages)


def conversation(n: int = 12) -> list[BaseMessage]:
    out: list[BaseMessage] = [SystemMessage("you are terse", id="sys")]
    for i in range(n):
        out.append(HumanMessage(f"question {i} " + "word " * (i % 4), id=f"h{i}"))
        out.append(AIMessage(f"answer {i} " + "more " * (i % 3), id=f"a{i}"))
    return out


@pytest.mark.parametrize("max_tokens", [0, 5, 17, 40, 1000])
@pytest.mark.parametrize(
    "strategy,options",
    [
        ("last", {"include_system": True, "start_on": "human"}),
        ("last", {"include_system": False, "start_on": None}),
        ("last", {"include_system": True, "start_on": "human", "end_on": "ai"}),
        ("first", {"start_on": None, "include_system": False}),
        ("first", {"start_on": None, "include_system": False, "end_on": "human"}),
    ],
)
def test_same_result_as_trim_messages(max_tokens, strategy, options):
    msgs = conversation()
    expected = trim_messages(
        msgs, max_tokens=max_tokens, token_counter=words, strategy=strategy, **options
    )
    got = HistoryTrimmer(
        max_tokens, token_counter=words, strategy=strategy, overflow="keep", **options
    ).invoke(msgs)
    assert [m.id for m in got] == [m.id for m in expected]
    assert all(any(g is m for m in msgs) for g in got)  # the original objects


def test_real_counter_budget_is_respected_and_ids_kept():
    msgs = conversation(40)
    trimmer = HistoryTrimmer(max_tokens=120, model="gpt-4o-mini")
    kept = trimmer.invoke(msgs)
    counter = get_counter("gpt-4o-mini")
    assert kept[0].id == "sys"
    assert kept[1].type == "human"
    assert kept[-1].id == "a39"
    assert counter.count_messages([{"role": m.type, "content": m.content} for m in kept]) <= 120
    assert all(any(k is m for m in msgs) for k in kept)  # original objects
    # one more message would not have fitted
    first = msgs.index(kept[1])
    bigger = [msgs[0], *msgs[first - 2 :]]
    from langchain_core.messages import convert_to_openai_messages

    assert counter.count_messages(convert_to_openai_messages(bigger)) > 120


def test_tool_pairs_never_split():
    msgs = [
        SystemMessage("sys"),
        HumanMessage("weather in oslo and paris?"),
        AIMessage(
            "",
            tool_calls=[
                {"name": "w", "args": {"c": "oslo"}, "id": "1"},
                {"name": "w", "args": {"c": "paris"}, "id": "2"},
            ],
            id="ai-tc",
        ),
        ToolMessage("sunny sunny sunny", tool_call_id="1", id="t1"),
        ToolMessage("rain rain rain rain", tool_call_id="2", id="t2"),
        AIMessage("oslo sunny, paris rain", id="final"),
    ]
    # released trim_messages keeps the lone ToolMessage t2 without its AI message
    ours = HistoryTrimmer(12, token_counter=words, start_on=None).invoke(msgs)
    assert [m.id for m in ours][1:] == ["final"]
    assert not any(isinstance(m, ToolMessage) for m in ours)
    ours = HistoryTrimmer(22, token_counter=words, start_on=None).invoke(msgs)
    assert [m.id for m in ours][1:] == ["ai-tc", "t1", "t2", "final"]


def test_pinned_and_summarizer():
    msgs = conversation(10)
    seen: list[list[BaseMessage]] = []

    def summarize(dropped):
        seen.append(dropped)
        return SystemMessage(f"summary of {len(dropped)} messages", id="summary")

    kept = HistoryTrimmer(30, token_counter=words, pinned=[1], summarizer=summarize).invoke(msgs)
    ids = [m.id for m in kept]
    assert ids[:2] == ["sys", "h0"]  # pinned first question kept
    assert "summary" in ids
    assert ids[-1] == "a9"
    assert seen and all(m.id not in ids for m in seen[-1])
    assert words(kept) <= 30


def test_overflow_raises_by_default():
    msgs = [SystemMessage("a very long system prompt " * 10), HumanMessage("hi")]
    with pytest.raises(ContextBudgetError):
        HistoryTrimmer(5, token_counter=words).invoke(msgs)
    assert HistoryTrimmer(5, token_counter=words, overflow="keep").invoke(msgs) == msgs[:1]


def test_images_and_content_blocks_kept_intact():
    img = HumanMessage(
        content=[
            {"type": "text", "text": "what is in this picture"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
        id="img",
    )
    msgs = [SystemMessage("sys"), HumanMessage("old " * 50), AIMessage("old answer " * 20), img]
    # the image is counted by the provider's image formula (gpt-4o: 1,457 tokens here)
    kept = HistoryTrimmer(max_tokens=1470, model="gpt-4o").invoke(msgs)
    assert [m.type for m in kept] == ["system", "human"]
    assert kept[-1] is img
    assert kept[-1].content[1]["image_url"]["url"] == "data:image/png;base64,AAAA"
    kept = HistoryTrimmer(max_tokens=1600, model="gpt-4o").invoke(msgs)
    assert kept == msgs


def test_budget_from_model_window_and_plan():
    from tokenward.context import plan

    # gpt-4o-mini: 128,000 window, 16,384 max output reserved by default
    assert HistoryTrimmer(model="gpt-4o-mini").max_tokens == 128000 - 16384
    assert HistoryTrimmer(model="gpt-4o-mini", reserve_output=8000).max_tokens == 120000
    assert HistoryTrimmer(plan={"history": 777}, model="gpt-4o").max_tokens == 777
    p = plan(10_000, 2_000, shares={"system": 0.1, "history": 0.5, "rag": 0.4})
    assert HistoryTrimmer(plan=p, model="gpt-4o").max_tokens == p["history"] == 4000
    with pytest.raises(ConfigurationError):
        HistoryTrimmer(token_counter=words)


def test_in_an_lcel_chain_the_model_sees_the_trimmed_prompt():
    acc = FakeAccountant()
    prompt = ChatPromptTemplate.from_messages(
        [("system", "be brief"), MessagesPlaceholder("history"), ("human", "{q}")]
    )
    trimmer = HistoryTrimmer(14, token_counter=words)
    chain = prompt | trimmer | make_model("ok")
    chain.invoke(
        {"history": conversation(6)[1:], "q": "and now?"},
        config={"callbacks": [TokenwardCallbackHandler(acc)]},
    )
    sent = [m.to_openai() for m in acc.preflights[0]["messages"]]
    assert sent[0] == {"role": "system", "content": "be brief"}
    assert sent[-1] == {"role": "user", "content": "and now?"}
    assert sent[1]["role"] == "user"
    assert len(sent) < 15


async def test_async_and_state_mapping():
    msgs = conversation(10)
    trimmer = HistoryTrimmer(20, token_counter=words)
    assert [m.id for m in await trimmer.ainvoke(msgs)] == [m.id for m in trimmer.invoke(msgs)]
    state = {"messages": msgs, "other": 1}
    out = trimmer.invoke(state)
    assert out["other"] == 1 and out["messages"] == trimmer.invoke(msgs)
    assert state["messages"] is msgs


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_in_runnable_with_message_history():
    store: dict[str, InMemoryChatMessageHistory] = {}
    acc = FakeAccountant()
    prompt = ChatPromptTemplate.from_messages(
        [("system", "be brief"), MessagesPlaceholder("history"), ("human", "{q}")]
    )
    trimmer = HistoryTrimmer(12, token_counter=words, include_system=False)
    chain = (
        RunnablePassthrough.assign(history=itemgetter("history") | trimmer)
        | prompt
        | make_model("fine answer")
    )
    with_history = RunnableWithMessageHistory(
        chain,
        lambda sid: store.setdefault(sid, InMemoryChatMessageHistory()),
        input_messages_key="q",
        history_messages_key="history",
    )
    cfg = {"configurable": {"session_id": "s1"}, "callbacks": [TokenwardCallbackHandler(acc)]}
    for i in range(6):
        with_history.invoke({"q": f"question number {i}"}, config=cfg)
    assert len(store["s1"].messages) == 12  # full history is kept in the store
    last_prompt = [m.to_openai() for m in acc.preflights[-1]["messages"]]
    assert len(last_prompt) < 12  # but the model saw a trimmed one
    assert last_prompt[-1]["content"] == "question number 5"
