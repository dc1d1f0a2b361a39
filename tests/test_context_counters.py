"""List counters: which are additive, proven on random lists, and what trimming asks of them.

An additive list counter's count of a list is a constant plus a per-message sum; the
trimmer then counts each message once (in a few batched calls) instead of searching over
prefixes. Each counter tokenward treats as additive has a property test here; counters
that are not additive are searched, and every path returns what ``trim_messages`` returns.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    trim_messages,
)
from langchain_core.messages.utils import _approximate_token_counter, count_tokens_approximately

from tokenward.context import per_list, trim_history
from tokenward.context._counters import MessageCounts, is_additive_list
from tokenward.integrations.langchain._messages import trim_messages_compat
from tokenward.messages import Message

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class WordCountingChatModel(FakeListChatModel):
    """A chat model that keeps ``BaseLanguageModel.get_num_tokens_from_messages`` (the
    default every chat model without its own count uses); words as tokens."""

    def get_token_ids(self, text: str) -> list[int]:
        return [len(w) for w in text.split()]


class OverridingChatModel(WordCountingChatModel):
    """Overrides the count: unknown to tokenward, so not assumed additive."""

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        return len(str(messages))


def _chat_openai(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real ChatOpenAI; tiktoken gets tokenward's shipped o200k encoding (offline)."""
    openai = pytest.importorskip("langchain_openai")
    import tiktoken.registry

    from tokenward.counting import get_encoding

    monkeypatch.setitem(tiktoken.registry.ENCODINGS, "o200k_base", get_encoding("o200k_base"))
    return openai.ChatOpenAI(model="gpt-4o", api_key="test-key")


def _counter(name: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[list[BaseMessage]], int]:
    if name == "approximate":
        return count_tokens_approximately
    if name == "approximate_shortcut":
        return _approximate_token_counter
    if name == "approximate_options":
        return functools.partial(
            count_tokens_approximately, chars_per_token=3.3, extra_tokens_per_message=2
        )
    if name == "default_model":
        return WordCountingChatModel(responses=["x"]).get_num_tokens_from_messages
    if name == "chat_openai":
        return _chat_openai(monkeypatch).get_num_tokens_from_messages
    assert name == "declared"

    def tokens(messages: list[BaseMessage]) -> int:
        return 7 + sum(2 + len(str(m.content)) // 3 for m in messages)

    return per_list(tokens, additive=True)


ADDITIVE = [
    "approximate",
    "approximate_shortcut",
    "approximate_options",
    "default_model",
    "chat_openai",
    "declared",
]

_text = st.text(alphabet="ab cd\n.é", max_size=30)
_block = st.one_of(
    _text.map(lambda t: {"type": "text", "text": t}),
    st.just(
        {
            "type": "image_url",
            "image_url": {"url": "https://example.invalid/a.png", "detail": "low"},
        }
    ),
)
_content = st.one_of(_text, st.lists(_block, min_size=1, max_size=3))
_name = st.one_of(st.none(), st.sampled_from(["alice", "bob_2"]))


@st.composite
def lc_messages(draw: Any) -> BaseMessage:
    kind = draw(st.sampled_from(["system", "human", "ai", "ai_tools", "tool"]))
    if kind == "system":
        return SystemMessage(draw(_content))
    if kind == "human":
        return HumanMessage(draw(_content), name=draw(_name))
    if kind == "ai":
        return AIMessage(draw(_content), name=draw(_name))
    if kind == "ai_tools":
        calls = [
            {"name": "lookup", "args": {"q": draw(_text)}, "id": f"call_{j}", "type": "tool_call"}
            for j in range(draw(st.integers(1, 2)))
        ]
        return AIMessage(draw(_text), tool_calls=calls)
    return ToolMessage(draw(_text), tool_call_id=draw(st.sampled_from(["call_0", "call_1"])))


def test_known_additive_counters_are_recognized(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ADDITIVE:
        assert is_additive_list(_counter(name, monkeypatch)), name


def test_counters_that_are_not_additive_are_not_assumed_so() -> None:
    # a fractional per-message extra is rounded once for the whole list
    assert not is_additive_list(
        functools.partial(count_tokens_approximately, extra_tokens_per_message=2.5)
    )
    # usage scaling multiplies the total by a ratio taken from the last AI message
    assert not is_additive_list(
        functools.partial(count_tokens_approximately, use_usage_metadata_scaling=True)
    )
    assert not is_additive_list(OverridingChatModel(responses=["x"]).get_num_tokens_from_messages)
    assert not is_additive_list(lambda ms: sum(len(str(m.content)) for m in ms))
    assert not is_additive_list(per_list(lambda ms: len(ms)))
    half = functools.partial(count_tokens_approximately, extra_tokens_per_message=2.5)
    assert half([HumanMessage("a")]) + half([HumanMessage("b")]) != half(
        [HumanMessage("a"), HumanMessage("b")]
    )


@pytest.mark.parametrize("name", ADDITIVE)
def test_counter_is_additive_on_random_lists(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    count = _counter(name, monkeypatch)

    @SETTINGS
    @given(messages=st.lists(lc_messages(), max_size=8))
    def additive(messages: list[BaseMessage]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = count([])
            assert count(messages) == base + sum(count([m]) - base for m in messages)

    additive()


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4"])
def test_tokenward_counter_is_additive_on_random_lists(model: str) -> None:
    counting = pytest.importorskip("tokenward.counting")
    counter = counting.get_counter(model)
    # its count_messages method passed as a list counter is counted through the counter
    assert MessageCounts([Message("user", "hi")], counter.count_messages).additive

    @SETTINGS
    @given(
        messages=st.lists(
            st.builds(
                Message,
                st.sampled_from(["system", "user", "assistant"]),
                st.text(alphabet="ab cd\n.é你好{}:1", max_size=40),
            ),
            min_size=1,
            max_size=8,
        )
    )
    def additive(messages: list[Message]) -> None:
        overhead = counter.count_messages(messages[:1]) - counter.count_message(messages[0])
        total = overhead + sum(map(counter.count_message, messages))
        assert counter.count_messages(messages) == total

    additive()


@st.composite
def lc_conversations(draw: Any) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    if draw(st.booleans()):
        out.append(SystemMessage(draw(_content)))
    for k in range(draw(st.integers(0, 10))):
        cls = draw(st.sampled_from([HumanMessage, AIMessage]))
        out.append(cls(draw(_content), id=f"m{k}", name=draw(_name)))
    return out


_types = st.sampled_from([None, "human", "ai", ["human", "system"]])

# A falsifying example hypothesis found: for strategy="last" trim_messages counts the cut
# message's text pieces (and content blocks) in its reversed working order, where "a" +
# "a a a\n" reads as 3 words, not 4: the whole text fits by that count and is kept.
_PARTIAL_SYSTEM = SystemMessage("s " * 11)  # 12 words with "System:"
_PARTIAL_LIST = HumanMessage([{"type": "text", "text": "a a a\na"}])


def test_partial_list_content_counted_like_trim_messages() -> None:
    count = _counter("default_model", pytest.MonkeyPatch())
    conv = [_PARTIAL_SYSTEM, _PARTIAL_LIST]
    kw: dict[str, Any] = dict(
        max_tokens=16, strategy="last", include_system=True, allow_partial=True
    )
    expected = trim_messages(conv, token_counter=count, **kw)
    assert [m.content for m in expected] == [_PARTIAL_SYSTEM.content, "a a a\na"]
    assert trim_messages_compat(conv, token_counter=count, **kw) == expected
    # content blocks too: trim_messages counts the kept blocks in reversed order
    blocks = HumanMessage(
        [{"type": "text", "text": t} for t in ("x y", "a ", "b")], id="blocks"
    )  # "Human: x ya b" is 4 words, "Human: a b" 3, but counted reversed "Human: ba " is 2
    kw = dict(max_tokens=2, strategy="last", allow_partial=True)
    expected = trim_messages([blocks], token_counter=count, **kw)
    assert [m.content for m in expected] == [blocks.content[1:]]
    assert trim_messages_compat([blocks], token_counter=count, **kw) == expected


def test_core_partial_is_counted_as_sent() -> None:
    # trim_history counts the cut text as it will be sent, so it stays within the budget
    # where trim_messages (above) does not: "Human: a a a\na" is 5 words, the room is 4
    count = WordCountingChatModel(responses=["x"]).get_num_tokens_from_messages
    core = [
        Message("system", _PARTIAL_SYSTEM.content),
        Message("user", [{"type": "text", "text": "a a a\na"}]),
    ]

    def words(ms: list[Message]) -> int:
        return count(
            [HumanMessage(m.content) if m.role == "user" else SystemMessage(m.content) for m in ms]
        )

    out = trim_history(core, 16, per_list(words, additive=True), allow_partial=True)
    assert [m.content for m in out] == [_PARTIAL_SYSTEM.content, "a"]
    assert words(out) <= 16


@pytest.mark.parametrize("name", [*ADDITIVE, "not_additive", "overriding_model"])
def test_trim_equals_trim_messages_for_every_counter(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if name == "not_additive":
        count: Any = functools.partial(count_tokens_approximately, extra_tokens_per_message=2.5)
    elif name == "overriding_model":
        count = OverridingChatModel(responses=["x"])
    else:
        count = _counter(name, monkeypatch)

    @SETTINGS
    @example(
        conv=[_PARTIAL_SYSTEM, _PARTIAL_LIST],
        budget=16,
        strategy="last",
        include_system=True,
        start_on=None,
        end_on=None,
        allow_partial=True,
    )
    @given(
        conv=lc_conversations(),
        budget=st.integers(0, 120),
        strategy=st.sampled_from(["last", "first"]),
        include_system=st.booleans(),
        start_on=_types,
        end_on=_types,
        allow_partial=st.booleans(),
    )
    def same(
        conv: list[BaseMessage],
        budget: int,
        strategy: str,
        include_system: bool,
        start_on: Any,
        end_on: Any,
        allow_partial: bool,
    ) -> None:
        kw: dict[str, Any] = dict(
            max_tokens=budget, strategy=strategy, end_on=end_on, allow_partial=allow_partial
        )
        if strategy == "last":
            kw.update(include_system=include_system, start_on=start_on)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = trim_messages(conv, token_counter=count, **kw)
            assert trim_messages_compat(conv, token_counter=count, **kw) == expected

    same()


def _as_input(m: BaseMessage, form: str) -> Any:
    """One message in a form ``convert_to_messages`` accepts."""
    if form == "dict":
        return {"role": m.type, "content": m.content, "id": m.id, "name": m.name}
    if form == "tuple":
        return (m.type, m.content)
    if form == "str" and isinstance(m, HumanMessage) and isinstance(m.content, str):
        return m.content
    return m


@pytest.mark.parametrize("name", ["approximate", "default_model", "not_additive"])
def test_mixed_inputs_trim_like_trim_messages(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "not_additive":
        count: Any = functools.partial(count_tokens_approximately, extra_tokens_per_message=2.5)
    else:
        count = _counter(name, monkeypatch)

    @SETTINGS
    @given(
        conv=lc_conversations(),
        forms=st.lists(st.sampled_from(["message", "dict", "tuple", "str"]), min_size=11),
        budget=st.integers(0, 120),
        strategy=st.sampled_from(["last", "first"]),
        start_on=_types,
        end_on=_types,
        allow_partial=st.booleans(),
    )
    def same(
        conv: list[BaseMessage],
        forms: list[str],
        budget: int,
        strategy: str,
        start_on: Any,
        end_on: Any,
        allow_partial: bool,
    ) -> None:
        mixed = [_as_input(m, f) for m, f in zip(conv, forms, strict=False)]
        given_list = list(mixed)
        kw: dict[str, Any] = dict(
            max_tokens=budget, strategy=strategy, end_on=end_on, allow_partial=allow_partial
        )
        if strategy == "last":
            kw.update(include_system=True, start_on=start_on)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = trim_messages(mixed, token_counter=count, **kw)
            assert trim_messages_compat(mixed, token_counter=count, **kw) == expected
        assert all(a is b for a, b in zip(mixed, given_list, strict=True))  # list untouched

    same()


def test_only_the_messages_looked_at_are_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    import tokenward.integrations.langchain._messages as lc_messages

    converted: list[Any] = []
    convert = lc_messages.convert_to_messages

    def recording(items: Any) -> Any:
        converted.extend(items)
        return convert(items)

    monkeypatch.setattr(lc_messages, "convert_to_messages", recording)
    history = [("system", "be brief")] + [
        ("human" if i % 2 == 0 else "ai", f"message {i} " + "w " * 20) for i in range(2000)
    ]
    kw: dict[str, Any] = dict(max_tokens=300, include_system=True, start_on="human")
    out = trim_messages_compat(history, token_counter=count_tokens_approximately, **kw)
    assert out == trim_messages(history, token_counter=count_tokens_approximately, **kw)
    assert 2 < len(out) < len(converted) <= len(out) + 3  # the window, the one that did not fit
    assert history[0] == ("system", "be brief")


def _history(n: int) -> list[BaseMessage]:
    out: list[BaseMessage] = [SystemMessage("You are terse. " * 10)]
    for i in range(n):
        cls = HumanMessage if i % 2 == 0 else AIMessage
        out.append(cls("word " * (5 + (i * 37) % 60), id=f"m{i}"))
    return out


class _Recording:
    """A list counter that records the lengths of the lists it is called with."""

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def __call__(self, messages: list[BaseMessage]) -> int:
        self.lengths.append(len(messages))
        return 3 + sum(3 + len(str(m.content).split()) for m in messages)


def test_additive_list_counter_counts_each_message_about_once() -> None:
    history = _history(2000)
    recording = _Recording()
    kw: dict[str, Any] = dict(max_tokens=1500, include_system=True, start_on="human")
    out = trim_messages_compat(history, token_counter=per_list(recording, additive=True), **kw)
    assert out == trim_messages(history, token_counter=recording.__call__, **kw)
    lc_lengths = list(recording.lengths)
    recording.lengths.clear()
    trim_messages_compat(history, token_counter=per_list(recording, additive=True), **kw)
    # trim_messages counted every message, then whole prefixes: thousands of messages
    assert sum(lc_lengths) > 2000
    # decomposed: the kept messages, the one that did not fit, a few more in batches
    assert sum(recording.lengths) <= len(out) + 10
    assert len(recording.lengths) <= 12


def test_list_counter_that_is_not_additive_is_searched_near_the_answer() -> None:
    history = _history(2000)
    recording = _Recording()
    kw: dict[str, Any] = dict(max_tokens=1500, include_system=True, start_on="human")
    out = trim_messages_compat(history, token_counter=per_list(recording), **kw)
    recording.lengths.clear()
    assert trim_messages_compat(history, token_counter=per_list(recording), **kw) == out
    # lists about as long as the answer, not the whole history
    assert max(recording.lengths) <= 2 * len(out)
    assert sum(recording.lengths) <= 8 * len(out)


def test_core_trim_with_a_declared_additive_counter() -> None:
    history = [Message("system", "be brief")] + [
        Message("user" if i % 2 == 0 else "assistant", "w " * (i % 7 + 1)) for i in range(40)
    ]
    lengths: list[int] = []

    def tokens(messages: list[Message]) -> int:
        lengths.append(len(messages))
        return 5 + sum(1 + len(m.text.split()) for m in messages)

    additive = trim_history(history, 60, per_list(tokens, additive=True))
    searched = trim_history(history, 60, per_list(tokens))
    assert additive == searched
    assert tokens(additive) - 5 <= 60
