"""Cache-aware trimming: the cut point holds under the high-water mark, cuts to low water."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenward.context import CACHE_RULES, CacheAwareTrim, CacheRules, trim_history
from tokenward.errors import ConfigurationError
from tokenward.messages import Message, ToolCall


def words(m: Message) -> int:
    return 3 + len(m.text.split()) + 2 * len(m.tool_calls)


def total(ms: list[Message]) -> int:
    return sum(map(words, ms))


SYSTEM = Message("system", "you are a careful assistant " * 3)  # 15 tokens


def turn(k: int, n_user: int = 8, n_reply: int = 12) -> list[Message]:
    return [
        Message("user", f"q{k} " + "w " * n_user, id=f"u{k}"),
        Message("assistant", f"a{k} " + "w " * n_reply, id=f"a{k}"),
    ]


def first_window(out: list[Message]) -> str | None:
    rest = [m for m in out if m.role != "system"]
    return rest[0].id if rest else None


def test_cut_holds_under_the_high_water_mark_and_cuts_to_low_water() -> None:
    state = CacheAwareTrim(low_water=0.5)
    history = [SYSTEM]
    previous: list[Message] = []
    cut_before: str | None = None
    moves = 0
    for k in range(60):
        history += turn(k)[:1]  # the user's new message
        out = trim_history(history, 200, words, cache_aware=state)
        assert total(out) <= 200 and out[0] is SYSTEM
        if state.held:
            # the cut did not move: the previous prompt is a prefix of this one
            assert first_window(out) == cut_before or cut_before is None
            assert out[: len(previous)] == previous
        else:
            moves += 1
            # it moved only because the history from the old cut no longer fitted ...
            old = history[[m.id for m in history].index(cut_before) :]
            assert total([SYSTEM, *old]) > 200
            # ... and it went back to the low-water mark
            assert total(out) <= 100
        cut_before = first_window(out)
        history += turn(k)[1:]  # the reply
        previous = out + history[-1:]
    assert moves == state.cuts >= 5
    assert state.turns == 60


def test_plain_trimming_moves_the_cut_every_turn_cache_aware_does_not() -> None:
    history = [SYSTEM]
    plain_moves = aware_moves = 0
    state = CacheAwareTrim(low_water=0.6)
    last_plain = last_aware = None
    for k in range(40):
        history += turn(k)
        plain = first_window(trim_history(history, 200, words))
        aware = first_window(trim_history(history, 200, words, cache_aware=state))
        plain_moves += plain != last_plain
        aware_moves += aware != last_aware
        last_plain, last_aware = plain, aware
    assert plain_moves > 30  # the oldest message changes on nearly every turn
    assert aware_moves * 2 < plain_moves  # once per (200 - 120) tokens of new turns


@st.composite
def growing_conversations(draw: Any) -> list[list[Message]]:
    """A conversation as the list of messages each turn adds (user, maybe tools, reply)."""
    turns: list[list[Message]] = []
    for k in range(draw(st.integers(1, 25))):
        add = [Message("user", "w " * draw(st.integers(0, 12)), id=f"u{k}")]
        if draw(st.booleans()):
            calls = tuple(ToolCall(f"c{k}.{j}", "f") for j in range(draw(st.integers(1, 2))))
            add.append(Message("assistant", "calling", tool_calls=calls, id=f"t{k}"))
            add += [
                Message("tool", "r " * draw(st.integers(0, 15)), tool_call_id=c.id, id=f"r{c.id}")
                for c in calls
            ]
        add.append(Message("assistant", "w " * draw(st.integers(0, 20)), id=f"a{k}"))
        turns.append(add)
    return turns


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    turns=growing_conversations(),
    budget=st.integers(20, 150),
    low=st.sampled_from([0.3, 0.5, 0.8, 25]),
    system=st.booleans(),
    pin=st.booleans(),
)
def test_invariants_hold_turn_after_turn(
    turns: list[list[Message]], budget: int, low: float, system: bool, pin: bool
) -> None:
    state = CacheAwareTrim(low_water=low)
    history: list[Message] = [SYSTEM] if system else []
    pinned = [len(history)] if pin else None  # the first user message
    prev_start: str | None = None
    prev_out: list[Message] = []
    for add in turns:
        history += add
        try:
            out = trim_history(history, budget, words, cache_aware=state, pinned=pinned)
        except Exception as exc:  # the system and pinned messages alone do not fit
            assert "max_tokens" in str(exc)
            return
        assert total(out) <= budget  # never over the high-water mark
        if system:
            assert out[0] is SYSTEM  # the system message is kept
        ids = [m.id for m in history]
        pos = [ids.index(m.id) for m in out]
        assert pos == sorted(pos)  # a subsequence, in order
        window = [m for m in out if m is not SYSTEM and not (pin and m is history[pinned[0]])]
        if window and not (pin and ids.index(window[0].id) == pinned[0] + 1):
            # start_on="human" holds, except where the window continues the pinned turn
            assert window[0].role == "user"
        for i, m in enumerate(history):  # tool groups are kept or dropped whole
            if m.tool_calls:
                group = [m] + [
                    x for x in history[i + 1 : i + 1 + len(m.tool_calls)] if x.role == "tool"
                ]
                assert len({g in out for g in group}) == 1
        start = window[0].id if window else None
        if state.held and prev_start is not None and start is not None:
            assert start == prev_start  # the cut did not move ...
            assert out[: len(prev_out)] == prev_out  # ... so the old prompt is a prefix
        if not state.held and prev_start is not None:
            assert total(out) <= state.low_tokens(budget) or not window
        prev_start, prev_out = start, out


def test_history_passed_as_dicts_and_with_old_messages_removed() -> None:
    state = CacheAwareTrim(low_water=0.5)
    history: list[dict[str, Any]] = [{"role": "system", "content": "s " * 10}]
    for k in range(12):
        history.append({"role": "user", "content": f"q{k} " + "w " * 8})
        history.append({"role": "assistant", "content": f"a{k} " + "w " * 12})
    first = trim_history(history, 120, words, cache_aware=state)
    cut_text = first[1].text
    # the caller drops the two oldest turns itself and adds one: the cut is found again
    history = history[:1] + history[5:] + [{"role": "user", "content": "new " * 3}]
    second = trim_history(history, 120, words, cache_aware=state)
    assert state.held and second[1].text == cut_text
    assert second[: len(first)] == first


def test_breakpoints_follow_the_provider_rules() -> None:
    history = [SYSTEM] + turn(0) + turn(1) + turn(2)[:1]
    anthropic = CacheAwareTrim(rules="anthropic")
    out = trim_history(history, 500, words, cache_aware=anthropic)
    assert anthropic.breakpoints == (0, len(out) - 1)  # end of the system prompt, last message
    openai = CacheAwareTrim(rules="openai")
    trim_history(history, 500, words, cache_aware=openai)
    assert openai.breakpoints == ()  # automatic prefix caching: nothing to mark
    # a long turn (tool calls) between two requests: the previous tail is beyond the
    # 20-block lookback, so it gets its own breakpoint and its cache entry is still read
    state = CacheAwareTrim(rules="anthropic")
    history = [SYSTEM] + turn(0)
    trim_history(history, 10_000, words, cache_aware=state)
    tail = len(history) - 1
    history += [Message("tool", "r", tool_call_id="x", id=f"r{i}") for i in range(25)]
    history += turn(1)
    trim_history(history, 10_000, words, cache_aware=state)
    assert state.breakpoints == (0, tail, len(history) - 1)


def test_cacheable_prefix_follows_the_provider_granularity() -> None:
    openai, anthropic = CACHE_RULES["openai"], CACHE_RULES["anthropic"]
    assert openai.cacheable(1023) == 0 and openai.cacheable(1024) == 1024
    assert openai.cacheable(1151) == 1024 and openai.cacheable(1152) == 1152
    assert anthropic.cacheable(1023) == 0 and anthropic.cacheable(5000) == 5000
    haiku = CacheRules("anthropic", 2048, 1, 4, 20)
    assert haiku.cacheable(2000) == 0


def test_options_that_would_change_the_prefix_are_refused() -> None:
    history = [SYSTEM] + turn(0)
    state = CacheAwareTrim()
    for kw in ({"allow_partial": True}, {"summarizer": lambda d: "s"}, {"strategy": "first"}):
        with pytest.raises(ConfigurationError, match="cache_aware"):
            trim_history(history, 100, words, cache_aware=state, **kw)
    with pytest.raises(ConfigurationError, match="low_water"):
        CacheAwareTrim(low_water=1.5)
    with pytest.raises(ConfigurationError, match="low_water"):
        CacheAwareTrim(low_water=0)
    with pytest.raises(ConfigurationError, match="cache rules"):
        CacheAwareTrim(rules="gemini")


def test_works_on_langchain_messages_through_the_core_algorithm() -> None:
    """The adapters call trim_items with their MessageOps and one state per conversation."""
    pytest.importorskip("langchain_core")
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    from tokenward.context import per_message
    from tokenward.context._counters import MessageCounts
    from tokenward.context._trim import trim_items
    from tokenward.integrations.langchain._messages import LANGCHAIN_OPS, to_core_message

    def count(m: Any) -> int:
        return 3 + len(str(m.content).split())

    state = CacheAwareTrim(low_water=0.5)
    history: list[Any] = [SystemMessage("sys " * 10)]
    starts = []
    for k in range(30):
        history.append(HumanMessage(f"q{k} " + "w " * 8))
        counts = MessageCounts(history, per_message(count), to_message=to_core_message)
        out = trim_items(
            history, 120, counts, LANGCHAIN_OPS, include_system=True, cache_aware=state
        )
        assert sum(map(count, out)) <= 120 and out[0] is history[0]
        starts.append(out[1].content)
        history.append(AIMessage(f"a{k} " + "w " * 12))
    assert len(set(starts)) == state.cuts + 1 < 15
