"""Cache-aware trimming through LangChain: HistoryTrimmer (per conversation) and the agent
middleware (per LangGraph thread), with the frameworks' real classes."""

from __future__ import annotations

from itertools import pairwise

import pytest
from langchain.agents import create_agent
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

from tests.test_langchain_callbacks import USAGE
from tests.test_langchain_middleware import EventAccountant, RecordingModel
from tokenward.context import CacheAwareTrim
from tokenward.errors import ConfigurationError
from tokenward.integrations.langchain._messages import trim_messages_compat
from tokenward.langchain import HistoryTrimmer, TokenBudgetMiddleware

HIGH, LOW = 120, 0.5


def words(messages: list[BaseMessage]) -> int:
    """One token per word plus one per message."""
    return sum(len(str(m.content).split()) + 1 for m in messages)


class Recording(GenericFakeChatModel):
    """A fake chat model that records what it was sent."""

    seen: list = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def replies(tag: str, n: int = 100):
    return iter([AIMessage(f"{tag} reply {i} " + "word " * (i % 5 + 3)) for i in range(n)])


def question(i: int) -> str:
    return f"question {i} " + "word " * (i % 4 + 2)


def check_prompts(prompts: list[list[BaseMessage]], high: int, low: int) -> int:
    """Each prompt starts with the previous one (the cut held) unless the history from the
    old cut no longer fitted ``high``; then it was cut back to ``low``. Returns the cuts."""
    cuts = 0
    for before, now in pairwise(prompts):
        assert words(now) <= high
        if [m.content for m in now[: len(before)]] == [m.content for m in before]:
            continue
        cuts += 1
        assert words(now) <= low
        # the old cut point, with everything after it, would not have fitted
        first = next(m.content for m in before if m.type != "system")
        assert first not in [m.content for m in now]
    return cuts


def test_history_trimmer_holds_the_prefix_per_session_with_runnable_with_message_history():
    prompt = ChatPromptTemplate.from_messages(
        [("system", "you are terse"), MessagesPlaceholder("history"), ("human", "{q}")]
    )
    trimmer = HistoryTrimmer(HIGH, token_counter=words, cache_aware=True, low_water=LOW)
    models = {"a": Recording(messages=replies("a")), "b": Recording(messages=replies("b"))}
    stores: dict[str, InMemoryChatMessageHistory] = {}

    def chain_for(session: str):
        return RunnableWithMessageHistory(
            prompt | trimmer | models[session],
            lambda sid: stores.setdefault(sid, InMemoryChatMessageHistory()),
            input_messages_key="q",
            history_messages_key="history",
        )

    for i in range(40):  # two conversations, interleaved, through one trimmer
        for session in ("a", "b"):
            chain_for(session).invoke(
                {"q": question(i)}, config={"configurable": {"session_id": session}}
            )
    a, b = trimmer.cache_state("a"), trimmer.cache_state({"configurable": {"session_id": "b"}})
    assert a is not None and b is not None and a is not b
    for session, state in (("a", a), ("b", b)):
        seen = models[session].seen
        assert len(seen) == 40 and all(s[0].content == "you are terse" for s in seen)
        cuts = check_prompts(seen, HIGH, int(HIGH * LOW))
        assert state.turns == 40 and 2 <= cuts == state.cuts
        assert state.breakpoints[0] == 0 and state.breakpoints[-1] == len(seen[-1]) - 1
    # without cache_aware the oldest kept message moves on nearly every turn
    plain = HistoryTrimmer(HIGH, token_counter=words)
    history = stores["a"].messages
    starts = {plain.invoke(history[: 2 * k + 1])[1].content for k in range(15, 40)}
    assert len(starts) > 15


def test_history_trimmer_matches_the_core_state_and_keys_threads():
    conv: list[BaseMessage] = [SystemMessage("you are terse")]
    trimmer = HistoryTrimmer(HIGH, token_counter=words, cache_aware="openai", low_water=60)
    own = CacheAwareTrim(low_water=60, rules="openai")
    for i in range(30):
        conv.append(HumanMessage(question(i)))
        got = trimmer.invoke(conv, {"configurable": {"thread_id": "t1"}})
        want = trim_messages_compat(
            conv,
            max_tokens=HIGH,
            token_counter=words,
            include_system=True,
            start_on="human",
            cache_aware=own,
        )
        assert got == want
        assert trimmer.invoke(conv[-1:], {"configurable": {"thread_id": "t2"}}) == conv[-1:]
        conv.append(AIMessage(f"reply {i} " + "word " * 9))
    state = trimmer.cache_state("t1")
    assert (state.cuts, state.turns) == (own.cuts, own.turns) and state.breakpoints == ()
    assert trimmer.cache_state("t2").turns == 30 and trimmer.cache_state("t3") is None
    # a state dict input (message-state preprocessors) goes the same way
    out = trimmer.invoke({"messages": conv}, {"configurable": {"thread_id": "t1"}})
    assert out["messages"] == trim_messages_compat(
        conv,
        max_tokens=HIGH,
        token_counter=words,
        include_system=True,
        start_on="human",
        cache_aware=own,
    )


def test_history_trimmer_with_one_state_and_lru_of_states():
    state = CacheAwareTrim(low_water=0.5)
    single = HistoryTrimmer(HIGH, token_counter=words, cache_aware=state)
    msgs = [HumanMessage(question(1))]
    single.invoke(msgs, {"configurable": {"thread_id": "x"}})
    single.invoke(msgs)
    assert single.cache_state("anything") is state and state.turns == 2
    small = HistoryTrimmer(HIGH, token_counter=words, cache_aware=True, max_conversations=2)
    for t in ("t1", "t2", "t3"):
        small.invoke(msgs, {"configurable": {"thread_id": t}})
    assert small.cache_state("t1") is None and small.cache_state("t3") is not None
    small.invoke(msgs)  # no conversation id: one shared state
    assert small.cache_state().turns == 1
    assert HistoryTrimmer(HIGH, token_counter=words).cache_state("t1") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cache_aware": "gemini"},
        {"cache_aware": 3},
        {"cache_aware": True, "low_water": 1.5},
        {"cache_aware": True, "allow_partial": True},
        {"cache_aware": True, "strategy": "first", "start_on": None},
        {"cache_aware": CacheAwareTrim(), "low_water": 0.5},
        {"low_water": 0.5},
        {"cache_aware": True, "max_conversations": 0},
    ],
)
def test_history_trimmer_rejects_bad_cache_options(kwargs):
    with pytest.raises(ConfigurationError):
        HistoryTrimmer(HIGH, token_counter=words, **kwargs)


# -- the agent middleware (create_agent, per LangGraph thread) ----------------------------------
def agent(trim_state: bool = False, **mw):
    model = RecordingModel(messages=replies("r", 200), usage=dict(USAGE))
    trimmer = HistoryTrimmer(HIGH, token_counter=words, include_system=False)
    middleware = TokenBudgetMiddleware(
        EventAccountant(), trimmer=trimmer, trim_state=trim_state, **mw
    )
    saver = InMemorySaver()
    built = create_agent(
        model, system_prompt="you are terse", middleware=[middleware], checkpointer=saver
    )
    return built, model, middleware


def test_middleware_holds_the_request_prefix_per_thread_and_keeps_the_checkpoint():
    graph, model, mw = agent(cache_aware=True, low_water=LOW)
    seen: dict[str, list] = {"t1": [], "t2": []}
    for i in range(30):
        for thread in ("t1", "t2"):
            config = {"configurable": {"thread_id": thread}}
            graph.invoke({"messages": [HumanMessage(f"{thread} " + question(i))]}, config)
            sent = model.seen[-1]
            assert sent[0].type == "system" and sent[-1].content.startswith(thread)
            seen[thread].append(sent[1:])  # the system prompt is not trimmed
    for thread, prompts in seen.items():
        state = mw.cache_state(thread)
        assert all(m.content.startswith(thread) for p in prompts for m in p[::2])
        cuts = check_prompts(prompts, HIGH, int(HIGH * LOW))
        assert 2 <= cuts == state.cuts and state.turns == 30
        assert state.breakpoints[-1] == len(prompts[-1]) - 1
        stored = graph.get_state({"configurable": {"thread_id": thread}}).values["messages"]
        assert len(stored) == 60  # the checkpoint keeps every message
    assert mw.cache_state("t1") is not mw.cache_state("t2")
    assert mw.cache_state("t3") is None


def test_middleware_trim_state_rewrites_the_checkpoint_only_at_cuts():
    graph, model, mw = agent(trim_state=True, cache_aware="anthropic", low_water=LOW)
    config = {"configurable": {"thread_id": "t"}}
    rewrites = 0
    stored: list = []
    for i in range(40):
        graph.invoke({"messages": [HumanMessage(question(i))]}, config)
        now = graph.get_state(config).values["messages"]
        if stored and now[0].id != stored[0].id:
            rewrites += 1
        else:  # the stored conversation only grew
            assert [m.id for m in now[: len(stored)]] == [m.id for m in stored]
        stored = now
    prompts = [s[1:] for s in model.seen]
    assert check_prompts(prompts, HIGH, int(HIGH * LOW)) == rewrites == mw.cache_state("t").cuts
    assert rewrites >= 2


def test_middleware_cache_option_on_the_trimmer_and_errors():
    trimmer = HistoryTrimmer(HIGH, token_counter=words, include_system=False, cache_aware=True)
    model = RecordingModel(messages=replies("r"), usage=dict(USAGE))
    mw = TokenBudgetMiddleware(EventAccountant(), trimmer=trimmer)
    graph = create_agent(model, middleware=[mw], checkpointer=InMemorySaver())
    graph.invoke({"messages": [HumanMessage("hi")]}, {"configurable": {"thread_id": "x"}})
    assert mw.cache_state("x").turns == 1 and trimmer.cache_state("x") is mw.cache_state("x")
    # the middleware option copies the trimmer: the original stays as it was
    plain = HistoryTrimmer(HIGH, token_counter=words)
    mw = TokenBudgetMiddleware(EventAccountant(), trimmer=plain, cache_aware="openai")
    assert mw.trimmer is not plain and plain.cache_state("x") is None
    with pytest.raises(ConfigurationError):
        TokenBudgetMiddleware(EventAccountant(), cache_aware=True)  # no trimmer
    with pytest.raises(ConfigurationError):
        TokenBudgetMiddleware(EventAccountant(), trimmer=trimmer, cache_aware=True)  # twice
    with pytest.raises(ConfigurationError):
        TokenBudgetMiddleware(EventAccountant(), trimmer=plain, low_water=0.5)
