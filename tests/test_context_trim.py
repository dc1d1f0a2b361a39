"""trim_history on core messages: options, tool groups, pinned, summary, counters, properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenward.context import cached_counter, per_list, per_message, trim_history
from tokenward.errors import ConfigurationError, ContextBudgetError
from tokenward.messages import Message, ToolCall


def words(m: Message) -> int:
    """Per-message counter: 3 overhead + words of the text (+2 per tool call)."""
    return 3 + len(m.text.split()) + 2 * len(m.tool_calls)


def msg(role: str, text: str = "a b c d e f g", **kw: Any) -> Message:  # 10 tokens by `words`
    return Message(role=role, content=text, **kw)


def tool_turn(call_id: str, n_results: int = 1) -> list[Message]:
    ai = Message(role="assistant", content="calling", tool_calls=(ToolCall(call_id, "f", "{}"),))
    return [ai] + [
        Message(role="tool", content="r e s", tool_call_id=call_id) for _ in range(n_results)
    ]


SYSTEM = msg("system", "s s s s s s s")  # 10


def test_last_keeps_system_and_starts_on_user_by_default() -> None:
    history = [SYSTEM, msg("user"), msg("assistant"), msg("user"), msg("assistant")]
    out = trim_history(history, 30, words)
    assert out == [history[0], history[3], history[4]]
    # without start_on the window may start on an assistant message
    out = trim_history(history, 40, words, start_on=None)
    assert out == [history[0], history[2], history[3], history[4]]
    out = trim_history(history, 40, words)
    assert out == [history[0], history[3], history[4]]


def test_first_strategy_and_its_argument_checks() -> None:
    history = [msg("user"), msg("assistant"), msg("user"), msg("assistant")]
    assert trim_history(history, 25, words, strategy="first") == history[:2]
    assert trim_history(history, 25, words, strategy="first", end_on="user") == history[:1]
    with pytest.raises(ConfigurationError, match="include_system"):
        trim_history(history, 25, words, strategy="first", include_system=True)
    with pytest.raises(ConfigurationError, match="start_on"):
        trim_history(history, 25, words, strategy="first", start_on="user")
    with pytest.raises(ConfigurationError, match="strategy"):
        trim_history(history, 25, words, strategy="middle")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_tokens"):
        trim_history(history, -1, words)


def test_tool_group_is_kept_or_dropped_whole() -> None:
    # user(10) ai-call(3+1+2=6) tool(6) tool(6) user(10)
    history = [msg("user"), *tool_turn("c1", 2), msg("user", "q")]
    assert [words(m) for m in history] == [10, 6, 6, 6, 4]
    # 4 + 6 fits a tool message but not the whole group (18): stop there
    out = trim_history(history, 15, words, include_system=False, start_on=None)
    assert out == [history[-1]]
    out = trim_history(history, 22, words, include_system=False, start_on=None)
    assert out == history[1:]
    # the LangChain 1.7 behaviour when grouping is off: an orphan tool message
    out = trim_history(
        history, 15, words, include_system=False, start_on=None, keep_tool_pairs=False
    )
    assert out == history[-2:] and out[0].role == "tool"
    # strategy first never ends on a call without its results
    out = trim_history(history, 25, words, strategy="first")
    assert out == history[:1]


def test_pinned_messages_are_kept_and_counted() -> None:
    history = [
        SYSTEM,
        msg("user", "the original task"),
        *[msg(r) for r in ("assistant", "user") * 5],
    ]
    out = trim_history(history, 40, words, pinned=[1])
    # system 10 + pinned 6 leaves 24: two messages (an assistant then a user... start_on user)
    assert out[:2] == history[:2]
    assert sum(words(m) for m in out) <= 40
    assert out == [history[0], history[1], history[-1]]
    # a predicate works the same; pinning a tool message pins its whole group
    turn = tool_turn("c9")
    history2 = [msg("user"), *turn, *[msg(r) for r in ("user", "assistant") * 4]]
    out = trim_history(history2, 30, words, pinned=lambda m: m.role == "tool")
    assert turn[0] in out and turn[1] in out
    assert sum(words(m) for m in out) <= 30


def test_a_reply_to_a_pinned_turn_is_not_dropped_by_start_on() -> None:
    # [system, pinned user, assistant] fits: the answer continues the pinned user turn
    history = [SYSTEM, msg("user", "the task"), msg("assistant")]
    assert trim_history(history, 50, words, pinned=[1]) == history
    # a window that does not continue a pinned message still starts on a user turn
    history = [SYSTEM, msg("user", "the task"), msg("assistant"), msg("user"), msg("assistant")]
    assert trim_history(history, 30, words, pinned=[1]) == history[:2]


def test_system_and_pinned_over_budget() -> None:
    history = [SYSTEM, msg("user"), msg("assistant")]
    with pytest.raises(ContextBudgetError, match="max_tokens=5") as err:
        trim_history(history, 5, words)
    assert "overflow='keep'" in str(err.value)
    assert trim_history(history, 5, words, overflow="keep") == [SYSTEM]
    with pytest.raises(ContextBudgetError):
        trim_history(history, 15, words, pinned=[1])


def test_summarizer_replaces_dropped_span_within_budget() -> None:
    history = [SYSTEM, *[msg(r, f"m{i} x y z") for i, r in enumerate(["user", "assistant"] * 6)]]
    seen: list[list[Message]] = []

    def summarize(dropped: list[Message]) -> str:
        seen.append(dropped)
        return "summary of " + " ".join(m.text.split()[0] for m in dropped)

    out = trim_history(history, 40, words, summarizer=summarize)
    assert out[0] is SYSTEM
    assert out[1].role == "user" and out[1].text.startswith("summary of m0")
    assert sum(words(m) for m in out) <= 40
    kept_tail = out[2:]
    assert kept_tail == history[-len(kept_tail) :]
    # the summary covers exactly the messages that are not in the output
    assert seen[-1] == [m for m in history if m not in out]
    # nothing dropped: no summary call
    seen.clear()
    assert trim_history(history, 1000, words, summarizer=summarize) == history
    assert seen == []


def test_summary_too_large_is_an_error() -> None:
    history = [msg(r) for r in ("user", "assistant") * 4]
    with pytest.raises(ContextBudgetError, match="summary"):
        trim_history(history, 20, words, summarizer=lambda d: "x " * 100)


def test_edge_cases() -> None:
    assert trim_history([], 10, words) == []
    huge = msg("user", "w " * 5000)
    assert trim_history([huge], 100, words) == []
    cut = trim_history([huge], 100, words, allow_partial=True, text_splitter=lambda t: t.split(" "))
    assert len(cut) == 1 and words(cut[0]) <= 100 and cut[0].id == huge.id
    assert trim_history([msg("user")], 0, words) == []


def test_non_text_content_parts() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    m = Message(role="user", content=[{"type": "text", "text": "look at this"}, image], id="u1")

    def count(x: Message) -> int:  # text words + 85 per image
        parts = x.content if isinstance(x.content, list) else [x.content]
        return len(x.text.split()) + 85 * sum(
            1 for p in parts if isinstance(p, dict) and p.get("type") == "image_url"
        )

    assert trim_history([m], 88, per_message(count)) == [m]
    out = trim_history([m], 50, per_message(count), allow_partial=True, strategy="first")
    assert out == [
        Message(role="user", content=[{"type": "text", "text": "look at this"}], id="u1")
    ]


def test_dict_input_and_counter_kinds() -> None:
    history = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "a b"},
        {"role": "assistant", "content": "c d"},
        {"role": "user", "content": "e f"},
    ]
    unannotated = lambda m: len(m.text.split()) + 1  # noqa: E731 - probed as per-message
    as_list = per_list(lambda ms: sum(len(m.text.split()) + 1 for m in ms))
    a = trim_history(history, 6, unannotated)
    b = trim_history(history, 6, as_list)
    assert a == b == [Message("system", "s"), Message("user", "e f")]
    with pytest.raises(ConfigurationError, match="counter"):
        trim_history(history, 6, None)


def test_last_counts_only_what_decides() -> None:
    calls: list[str] = []

    def counting(m: Message) -> int:
        calls.append(m.text)
        return 10

    history = [SYSTEM] + [msg(r, f"{i}") for i, r in enumerate(["user", "assistant"] * 500)]
    out = trim_history(history, 55, counting)
    assert len(out) == 1 + 4  # system + 4 messages (a 5th does not fit; window starts on user)
    assert len(calls) == 1 + 5  # system, 4 kept, 1 that did not fit: nothing else
    cached = cached_counter(counting)
    calls.clear()
    trim_history(history, 55, cached)
    trim_history(history + [msg("user", "new")], 55, cached)
    assert len(calls) == 6 + 1  # second call only counted the new message


def test_model_name_counter_counts_like_the_model() -> None:
    counting = pytest.importorskip("tokenward.counting")
    counter = counting.get_counter("gpt-4o")
    history = [
        msg("system", "You are terse."),
        *[msg(r, f"message number {i} " * 5) for i, r in enumerate(["user", "assistant"] * 20)],
    ]
    out = trim_history(history, 200, "gpt-4o", start_on=None)
    assert counter.count_messages(out) <= 200
    one_more = history[len(history) - len(out)]
    assert counter.count_messages([out[0], one_more, *out[1:]]) > 200


# -- properties ---------------------------------------------------------------------


@st.composite
def conversations(draw: Any) -> list[Message]:
    out: list[Message] = []

    def add(role: str, text: str, **kw: Any) -> None:
        out.append(Message(role, text, id=f"m{len(out)}", **kw))

    if draw(st.booleans()):
        add("system", "sys " * draw(st.integers(0, 6)))
    for k in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["user", "assistant", "tool_turn", "orphan_tool"]))
        text = "w " * draw(st.integers(0, 8))
        if kind == "tool_turn":
            calls = draw(st.integers(1, 3))
            add(
                "assistant", text, tool_calls=tuple(ToolCall(f"{k}-{j}", "f") for j in range(calls))
            )
            for j in range(calls):
                add("tool", "r " * draw(st.integers(0, 4)), tool_call_id=f"{k}-{j}")
        elif kind == "orphan_tool":
            add("tool", text, tool_call_id="lost")
        else:
            add(kind, text)
    return out


def _split_words(text: str) -> list[str]:
    pieces = text.split(" ")
    return [p + " " for p in pieces[:-1]] + pieces[-1:]


def _groups_intact(original: list[Message], out: list[Message]) -> bool:
    ids = {id(m) for m in out}
    for i, m in enumerate(original):
        if m.role == "assistant" and m.tool_calls:
            j = i + 1
            group = [m]
            while j < len(original) and original[j].role == "tool":
                group.append(original[j])
                j += 1
            if len({id(g) in ids for g in group}) != 1:
                return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conv=conversations(),
    budget=st.integers(0, 80),
    strategy=st.sampled_from(["last", "first"]),
    start_on=st.sampled_from([None, "user"]),
    end_on=st.sampled_from([None, "user", "assistant"]),
    partial=st.booleans(),
    pin=st.booleans(),
)
def test_trim_invariants(
    conv: list[Message],
    budget: int,
    strategy: str,
    start_on: Any,
    end_on: Any,
    partial: bool,
    pin: bool,
) -> None:
    kw: dict[str, Any] = dict(
        strategy=strategy, end_on=end_on, allow_partial=partial, text_splitter=_split_words
    )
    if strategy == "last":
        kw.update(start_on=start_on, include_system=True)
    pinned = [len(conv) // 2] if pin and conv else None
    try:
        out = trim_history(conv, budget, words, pinned=pinned, **kw)
    except ContextBudgetError:
        must = [conv[0]] if conv and conv[0].role == "system" and strategy == "last" else []
        pinned_cost = sum(words(m) for m in must) + (words(conv[pinned[0]]) if pinned else 0)
        assert pinned_cost > budget or pinned  # pinned tool groups may cost more than one message
        return
    # never over budget
    assert sum(words(m) for m in out) <= budget
    # order kept: output is a subsequence of the input (a cut message stands for its original)
    by_id = {o.id: i for i, o in enumerate(conv)}
    pos = [by_id[m.id] for m in out]
    assert pos == sorted(pos) and len(set(pos)) == len(pos)
    for m in out:
        original = conv[by_id[m.id]]
        assert m is original or (partial and m.role == original.role and m.text in original.text)
    # system kept with "last"
    if strategy == "last" and conv and conv[0].role == "system" and end_on is None:
        assert out[0] is conv[0]
    # pinned kept
    if pinned:
        assert conv[pinned[0]] in out
    # tool groups intact
    assert _groups_intact(conv, out)
    # idempotent (LangChain semantics: end_on also applies to a lone system message)
    if strategy == "last" and end_on and (not out or out[-1].role != end_on):
        return
    assert (
        trim_history(
            out,
            budget,
            words,
            pinned=None if not pinned else [i for i, m in enumerate(out) if m is conv[pinned[0]]],
            **kw,
        )
        == out
    )
