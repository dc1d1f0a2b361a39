"""Cache-aware trimming through LangChain: HistoryTrimmer (per conversation) and the agent
middleware (per LangGraph thread), with the frameworks' real classes."""

from __future__ import annotations

from itertools import pairwise

import pytest
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from pydantic import Field

from tokenward.context import CacheAwareTrim
from tokenward.errors import ConfigurationError
from tokenward.integrations.langchain._messages import trim_messages_compat
from tokenward.langchain import HistoryTrimmer

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
        first = before[1].content
        rest = [m.content for m in now]
        assert first not in rest
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
