"""LangChain's own ``trim_messages`` unit tests, run against tokenward's trimming.

Ported from langchain-ai/langchain, libs/core/tests/unit_tests/messages/test_utils.py
(MIT licence, Copyright (c) LangChain, Inc.), the trim_messages tests of the newest
stored revision (commit 00632a94a97058d85a82e06099994b3c0ea8d3ce), including the
tool-call group tests for issue #29637 that released langchain-core 1.7.2 fails.

Each test runs through two paths:

* ``direct``: ``trim_messages_compat`` on the ``BaseMessage`` objects (no conversion);
* ``core``: ``to_core`` -> ``tokenward.context.trim_history`` -> ``from_core``.

This module deliberately uses ``from __future__ import annotations``: LangChain's own
per-message counter detection breaks under it, ours must not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import FakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.tools import BaseTool

from tokenward.context import per_list, per_message, trim_history
from tokenward.context._counters import counter_kind
from tokenward.context._trim import group_boundaries
from tokenward.integrations.langchain._messages import (
    LANGCHAIN_OPS,
    _type_predicate,
    from_core,
    from_core_message,
    langchain_counter,
    to_core,
    trim_messages_compat,
)


def _trim_via_core(messages: Sequence[BaseMessage] | None = None, **kw: Any) -> Any:
    """to_core -> trim_history -> from_core, with the LangChain counter wrapped."""
    if messages is None:
        from langchain_core.runnables import RunnableLambda

        return RunnableLambda(lambda ms: _trim_via_core(ms, **kw))
    kw = dict(kw)
    lc = langchain_counter(kw.pop("token_counter"))
    if hasattr(lc, "count_message"):
        counter: Any = lc
    elif counter_kind(lc) == "message":
        counter = per_message(lambda m: lc(from_core_message(m)))
    else:
        counter = per_list(lambda ms: lc(from_core(ms)))

    def pred(spec: Any) -> Any:
        p = _type_predicate(spec)
        return None if p is None else (lambda m: p(from_core_message(m)))

    strategy = kw.pop("strategy", "last")
    out = trim_history(
        to_core(list(messages)),
        kw.pop("max_tokens"),
        counter,
        strategy=strategy,
        include_system=kw.pop("include_system", False),
        start_on=pred(kw.pop("start_on", None)),
        end_on=pred(kw.pop("end_on", None)),
        overflow="keep",
        **kw,
    )
    return from_core(out)


@pytest.fixture(params=["direct", "core"])
def trim_messages(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return trim_messages_compat if request.param == "direct" else _trim_via_core


_MESSAGES_TO_TRIM = [
    SystemMessage("This is a 4 token text."),
    HumanMessage("This is a 4 token text.", id="first"),
    AIMessage(
        [
            {"type": "text", "text": "This is the FIRST 4 token block."},
            {"type": "text", "text": "This is the SECOND 4 token block."},
        ],
        id="second",
    ),
    HumanMessage("This is a 4 token text.", id="third"),
    AIMessage("This is a 4 token text.", id="fourth"),
]
_MESSAGES_TO_TRIM_COPY = [m.model_copy(deep=True) for m in _MESSAGES_TO_TRIM]


def dummy_token_counter(messages: list[BaseMessage]) -> int:
    # treat each message like it adds 3 default tokens at the beginning
    # of the message and at the end of the message. 3 + 4 + 3 = 10 tokens
    # per message.
    default_content_len = 4
    default_msg_prefix_len = 3
    default_msg_suffix_len = 3

    count = 0
    for msg in messages:
        if isinstance(msg.content, str):
            count += default_msg_prefix_len + default_content_len + default_msg_suffix_len
        if isinstance(msg.content, list):
            count += (
                default_msg_prefix_len
                + len(msg.content) * default_content_len
                + default_msg_suffix_len
            )
    return count


class FakeTokenCountingModel(FakeChatModel):
    def get_num_tokens_from_messages(
        self,
        messages: list[BaseMessage],
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool] | None = None,
    ) -> int:
        return dummy_token_counter(messages)


def test_trim_messages_first_30(trim_messages: Callable[..., Any]) -> None:
    expected = [
        SystemMessage("This is a 4 token text."),
        HumanMessage("This is a 4 token text.", id="first"),
    ]
    actual = trim_messages(
        _MESSAGES_TO_TRIM, max_tokens=30, token_counter=dummy_token_counter, strategy="first"
    )
    assert actual == expected
    assert _MESSAGES_TO_TRIM == _MESSAGES_TO_TRIM_COPY


def test_trim_messages_first_30_allow_partial(trim_messages: Callable[..., Any]) -> None:
    expected = [
        SystemMessage("This is a 4 token text."),
        HumanMessage("This is a 4 token text.", id="first"),
        AIMessage([{"type": "text", "text": "This is the FIRST 4 token block."}], id="second"),
    ]
    actual = trim_messages(
        _MESSAGES_TO_TRIM,
        max_tokens=30,
        token_counter=dummy_token_counter,
        strategy="first",
        allow_partial=True,
    )
    assert actual == expected
    assert _MESSAGES_TO_TRIM == _MESSAGES_TO_TRIM_COPY


def test_trim_messages_first_30_allow_partial_end_on_human(
    trim_messages: Callable[..., Any],
) -> None:
    expected = [
        SystemMessage("This is a 4 token text."),
        HumanMessage("This is a 4 token text.", id="first"),
    ]
    actual = trim_messages(
        _MESSAGES_TO_TRIM,
        max_tokens=30,
        token_counter=dummy_token_counter,
        strategy="first",
        allow_partial=True,
        end_on="human",
    )
    assert actual == expected
    assert _MESSAGES_TO_TRIM == _MESSAGES_TO_TRIM_COPY


def test_trim_messages_last_30_include_system(trim_messages: Callable[..., Any]) -> None:
    expected = [
        SystemMessage("This is a 4 token text."),
        HumanMessage("This is a 4 token text.", id="third"),
        AIMessage("This is a 4 token text.", id="fourth"),
    ]
    actual = trim_messages(
        _MESSAGES_TO_TRIM,
        max_tokens=30,
        include_system=True,
        token_counter=dummy_token_counter,
        strategy="last",
    )
    assert actual == expected
    assert _MESSAGES_TO_TRIM == _MESSAGES_TO_TRIM_COPY


def test_trim_messages_last_40_include_system_allow_partial(
    trim_messages: Callable[..., Any],
) -> None:
    expected = [
        SystemMessage("This is a 4 token text."),
        AIMessage([{"type": "text", "text": "This is the SECOND 4 token block."}], id="second"),
        HumanMessage("This is a 4 token text.", id="third"),
        AIMessage("This is a 4 token text.", id="fourth"),
    ]
    actual = trim_messages(
        _MESSAGES_TO_TRIM,
        max_tokens=40,
        token_counter=dummy_token_counter,
        strategy="last",
        allow_partial=True,
        include_system=True,
    )
    assert actual == expected
    assert _MESSAGES_TO_TRIM == _MESSAGES_TO_TRIM_COPY


def test_trim_messages_last_30_include_system_allow_partial_end_on_human(
    trim_messages: Callable[..., Any],
) -> None:
    expected = [
        SystemMessage("This is a 4 token text."),
        AIMessage([{"type": "text", "text": "This is the SECOND 4 token block."}], id="second"),
        HumanMessage("This is a 4 token text.", id="third"),
    ]
    actual = trim_messages(
        _MESSAGES_TO_TRIM,
        max_tokens=30,
        token_counter=dummy_token_counter,
        strategy="last",
        allow_partial=True,
        include_system=True,
        end_on="human",
    )
    assert actual == expected
    assert _MESSAGES_TO_TRIM == _MESSAGES_TO_TRIM_COPY


def test_trim_messages_last_40_include_system_allow_partial_start_on_human(
    trim_messages: Callable[..., Any],
) -> None:
    expected = [
        SystemMessage("This is a 4 token text."),
        HumanMessage("This is a 4 token text.", id="third"),
        AIMessage("This is a 4 token text.", id="fourth"),
    ]
    actual = trim_messages(
        _MESSAGES_TO_TRIM,
        max_tokens=30,
        token_counter=dummy_token_counter,
        strategy="last",
        allow_partial=True,
        include_system=True,
        start_on="human",
    )
    assert actual == expected
    assert _MESSAGES_TO_TRIM == _MESSAGES_TO_TRIM_COPY


def test_trim_messages_allow_partial_one_message(trim_messages: Callable[..., Any]) -> None:
    expected = [HumanMessage("Th", id="third")]
    actual = trim_messages(
        [HumanMessage("This is a funky text.", id="third")],
        max_tokens=2,
        token_counter=lambda messages: sum(len(m.content) for m in messages),
        text_splitter=list,
        strategy="first",
        allow_partial=True,
    )
    assert actual == expected
    assert _MESSAGES_TO_TRIM == _MESSAGES_TO_TRIM_COPY


def test_trim_messages_last_allow_partial_one_message(trim_messages: Callable[..., Any]) -> None:
    expected = [HumanMessage("t.", id="third")]
    actual = trim_messages(
        [HumanMessage("This is a funky text.", id="third")],
        max_tokens=2,
        token_counter=lambda messages: sum(len(m.content) for m in messages),
        text_splitter=list,
        strategy="last",
        allow_partial=True,
    )
    assert actual == expected
    assert _MESSAGES_TO_TRIM == _MESSAGES_TO_TRIM_COPY


def test_trim_messages_allow_partial_text_splitter(trim_messages: Callable[..., Any]) -> None:
    expected = [
        HumanMessage("a 4 token text.", id="third"),
        AIMessage("This is a 4 token text.", id="fourth"),
    ]

    def count_words(msgs: list[BaseMessage]) -> int:
        count = 0
        for msg in msgs:
            if isinstance(msg.content, str):
                count += len(msg.content.split(" "))
            else:
                count += len(" ".join(block["text"] for block in msg.content).split(" "))  # type: ignore[index]
        return count

    def _split_on_space(text: str) -> list[str]:
        splits = text.split(" ")
        return [s + " " for s in splits[:-1]] + splits[-1:]

    actual = trim_messages(
        _MESSAGES_TO_TRIM,
        max_tokens=10,
        token_counter=count_words,
        strategy="last",
        allow_partial=True,
        text_splitter=_split_on_space,
    )
    assert actual == expected
    assert _MESSAGES_TO_TRIM == _MESSAGES_TO_TRIM_COPY


def test_trim_messages_include_system_strategy_last_empty_messages(
    trim_messages: Callable[..., Any],
) -> None:
    expected: list[BaseMessage] = []
    actual = trim_messages(
        max_tokens=10, token_counter=dummy_token_counter, strategy="last", include_system=True
    ).invoke([])
    assert actual == expected


def test_trim_messages_invoke(trim_messages: Callable[..., Any]) -> None:
    actual = trim_messages(max_tokens=10, token_counter=dummy_token_counter).invoke(
        _MESSAGES_TO_TRIM
    )
    expected = trim_messages(_MESSAGES_TO_TRIM, max_tokens=10, token_counter=dummy_token_counter)
    assert actual == expected
    # and both equal what LangChain itself returns for this case
    assert actual == [AIMessage("This is a 4 token text.", id="fourth")]


def test_trim_messages_bound_model_token_counter(trim_messages: Callable[..., Any]) -> None:
    trimmer = trim_messages(max_tokens=10, token_counter=FakeTokenCountingModel().bind(foo="bar"))
    assert trimmer.invoke([HumanMessage("foobar")]) == [HumanMessage("foobar")]


def test_trim_messages_bad_token_counter(trim_messages: Callable[..., Any]) -> None:
    trimmer = trim_messages(max_tokens=10, token_counter={})
    with pytest.raises(
        ValueError,
        match=re.escape(
            "'token_counter' expected to be a model that implements "
            "'get_num_tokens_from_messages()' or a function. "
            "Received object of type <class 'dict'>."
        ),
    ):
        trimmer.invoke([HumanMessage("foobar")])


def test_trim_messages_partial_text_splitting(trim_messages: Callable[..., Any]) -> None:
    messages = [HumanMessage(content="This is a long message that needs trimming")]
    messages_copy = [m.model_copy(deep=True) for m in messages]

    def count_characters(msgs: list[BaseMessage]) -> int:
        return sum(len(m.content) if isinstance(m.content, str) else 0 for m in msgs)

    def char_splitter(text: str) -> list[str]:
        return list(text)

    result = trim_messages(
        messages,
        max_tokens=10,
        token_counter=count_characters,
        strategy="first",
        allow_partial=True,
        text_splitter=char_splitter,
    )
    assert len(result) == 1
    assert result[0].content == "This is a "
    assert messages == messages_copy


def test_trim_messages_mixed_content_with_partial(trim_messages: Callable[..., Any]) -> None:
    messages = [
        AIMessage(
            content=[
                {"type": "text", "text": "First part of text."},
                {"type": "text", "text": "Second part that should be trimmed."},
            ]
        )
    ]
    messages_copy = [m.model_copy(deep=True) for m in messages]

    def count_text_length(msgs: list[BaseMessage]) -> int:
        total = 0
        for msg in msgs:
            if isinstance(msg.content, list):
                for block in msg.content:
                    if isinstance(block, dict) and block.get("type") == "text":
                        total += len(block["text"])
            elif isinstance(msg.content, str):
                total += len(msg.content)
        return total

    result = trim_messages(
        messages,
        max_tokens=20,
        token_counter=count_text_length,
        strategy="first",
        allow_partial=True,
    )
    assert len(result) == 1
    assert len(result[0].content) == 1
    content = result[0].content[0]
    assert isinstance(content, dict)
    assert content["text"] == "First part of text."
    assert messages == messages_copy


def test_trim_messages_exact_token_boundary(trim_messages: Callable[..., Any]) -> None:
    messages = [
        SystemMessage(content="10 tokens exactly."),
        HumanMessage(content="Another 10 tokens."),
    ]
    result1 = trim_messages(
        messages, max_tokens=10, token_counter=dummy_token_counter, strategy="first"
    )
    assert len(result1) == 1
    assert result1[0].content == "10 tokens exactly."
    result2 = trim_messages(
        messages, max_tokens=20, token_counter=dummy_token_counter, strategy="first"
    )
    assert len(result2) == 2
    assert result2 == messages


def test_trim_messages_start_on_with_allow_partial(trim_messages: Callable[..., Any]) -> None:
    messages = [
        HumanMessage(content="First human message"),
        AIMessage(content="AI response"),
        HumanMessage(content="Second human message"),
    ]
    messages_copy = [m.model_copy(deep=True) for m in messages]
    result = trim_messages(
        messages,
        max_tokens=20,
        token_counter=dummy_token_counter,
        strategy="last",
        allow_partial=True,
        start_on="human",
    )
    assert len(result) == 1
    assert result[0].content == "Second human message"
    assert messages == messages_copy


def test_trim_messages_token_counter_shortcut_approximate(
    trim_messages: Callable[..., Any],
) -> None:
    messages = [
        SystemMessage("This is a test message"),
        HumanMessage("Another test message", id="first"),
        AIMessage("AI response here", id="second"),
    ]
    messages_copy = [m.model_copy(deep=True) for m in messages]
    result_shortcut = trim_messages(
        messages, max_tokens=50, token_counter="approximate", strategy="last"
    )
    result_direct = trim_messages(
        messages, max_tokens=50, token_counter=count_tokens_approximately, strategy="last"
    )
    assert result_shortcut == result_direct
    assert messages == messages_copy


def test_trim_messages_token_counter_shortcut_invalid(trim_messages: Callable[..., Any]) -> None:
    messages = [SystemMessage("This is a test message"), HumanMessage("Another test message")]
    with pytest.raises(ValueError, match="Invalid token_counter shortcut 'invalid'"):
        trim_messages(messages, max_tokens=50, token_counter="invalid", strategy="last")


def test_trim_messages_token_counter_shortcut_with_options(
    trim_messages: Callable[..., Any],
) -> None:
    messages = [
        SystemMessage("System instructions"),
        HumanMessage("First human message", id="first"),
        AIMessage("First AI response", id="ai1"),
        HumanMessage("Second human message", id="second"),
        AIMessage("Second AI response", id="ai2"),
    ]
    messages_copy = [m.model_copy(deep=True) for m in messages]
    result = trim_messages(
        messages,
        max_tokens=100,
        token_counter="approximate",
        strategy="last",
        include_system=True,
        start_on="human",
    )
    assert len(result) >= 2
    assert isinstance(result[0], SystemMessage)
    assert any(isinstance(msg, HumanMessage) for msg in result[1:])
    assert messages == messages_copy


# ---------- tool-call group-aware trim_messages (issue #29637) ----------

_TOOL_CALL_MESSAGES = [
    HumanMessage("hi"),
    AIMessage("hello"),
    HumanMessage("what's the weather in florida?"),
    AIMessage(
        [
            {"type": "text", "text": "let's check the weather in florida"},
            {
                "type": "tool_use",
                "id": "abc123",
                "name": "get_weather",
                "input": {"location": "florida"},
            },
        ],
        tool_calls=[
            {
                "name": "get_weather",
                "args": {"location": "florida"},
                "id": "abc123",
                "type": "tool_call",
            },
        ],
    ),
    ToolMessage("It's sunny.", name="get_weather", tool_call_id="abc123"),
]


def test_trim_messages_tool_group_never_split_first(trim_messages: Callable[..., Any]) -> None:
    result = trim_messages(
        _TOOL_CALL_MESSAGES, max_tokens=35, token_counter=dummy_token_counter, strategy="first"
    )
    assert len(result) == 3
    assert isinstance(result[0], HumanMessage)
    assert isinstance(result[2], HumanMessage)
    for msg in result:
        if isinstance(msg, AIMessage) and msg.tool_calls:
            idx = result.index(msg)
            assert idx + 1 < len(result)
            assert isinstance(result[idx + 1], ToolMessage)


def test_trim_messages_tool_group_never_split_last(trim_messages: Callable[..., Any]) -> None:
    result = trim_messages(
        _TOOL_CALL_MESSAGES, max_tokens=15, token_counter=dummy_token_counter, strategy="last"
    )
    if result:
        assert not isinstance(result[0], ToolMessage)
    assert result == []  # ours: the group does not fit, nothing older may be taken after it


def test_trim_messages_tool_group_included_together_last(trim_messages: Callable[..., Any]) -> None:
    result = trim_messages(
        _TOOL_CALL_MESSAGES, max_tokens=25, token_counter=dummy_token_counter, strategy="last"
    )
    assert len(result) == 2
    assert isinstance(result[0], AIMessage)
    assert result[0].tool_calls
    assert isinstance(result[1], ToolMessage)


def test_trim_messages_tool_group_included_together_first(
    trim_messages: Callable[..., Any],
) -> None:
    result = trim_messages(
        _TOOL_CALL_MESSAGES, max_tokens=55, token_counter=dummy_token_counter, strategy="first"
    )
    assert len(result) == 5
    assert isinstance(result[3], AIMessage)
    assert result[3].tool_calls
    assert isinstance(result[4], ToolMessage)


def test_trim_messages_no_reversed_messages_sent_to_counter(
    trim_messages: Callable[..., Any],
) -> None:
    call_log: list[list[BaseMessage]] = []

    def tracking_counter(messages: list[BaseMessage]) -> int:
        call_log.append(list(messages))
        return len(messages) * 10

    trim_messages(
        _TOOL_CALL_MESSAGES, max_tokens=30, token_counter=tracking_counter, strategy="last"
    )
    assert call_log
    for call_msgs in call_log:
        for i, msg in enumerate(call_msgs):
            if isinstance(msg, ToolMessage):
                assert i > 0, "ToolMessage at index 0 — reversed sequence detected"
                prev = call_msgs[i - 1]
                assert isinstance(prev, AIMessage) and prev.tool_calls


def test_trim_messages_tool_group_with_include_system(trim_messages: Callable[..., Any]) -> None:
    messages = [SystemMessage("You are a helpful assistant."), *_TOOL_CALL_MESSAGES]
    result = trim_messages(
        messages,
        max_tokens=35,
        token_counter=dummy_token_counter,
        strategy="last",
        include_system=True,
    )
    assert isinstance(result[0], SystemMessage)
    non_system = result[1:]
    for i, msg in enumerate(non_system):
        if isinstance(msg, ToolMessage):
            assert i > 0
            assert isinstance(non_system[i - 1], AIMessage)
    assert result == [messages[0], *_TOOL_CALL_MESSAGES[3:]]


def test_trim_messages_tool_group_start_on_human(trim_messages: Callable[..., Any]) -> None:
    result = trim_messages(
        _TOOL_CALL_MESSAGES,
        max_tokens=25,
        token_counter=dummy_token_counter,
        strategy="last",
        start_on="human",
    )
    if result:
        assert isinstance(result[0], HumanMessage)
    assert result == []


def test_trim_messages_multiple_tool_groups(trim_messages: Callable[..., Any]) -> None:
    messages = [
        HumanMessage("query 1"),
        AIMessage(
            "calling tool A",
            tool_calls=[{"name": "A", "args": {}, "id": "a1", "type": "tool_call"}],
        ),
        ToolMessage("result A", tool_call_id="a1"),
        HumanMessage("query 2"),
        AIMessage(
            "calling tool B",
            tool_calls=[{"name": "B", "args": {}, "id": "b1", "type": "tool_call"}],
        ),
        ToolMessage("result B", tool_call_id="b1"),
    ]
    result = trim_messages(
        messages, max_tokens=35, token_counter=dummy_token_counter, strategy="last"
    )
    assert len(result) == 3
    assert isinstance(result[0], HumanMessage)
    assert result[0].content == "query 2"
    assert isinstance(result[1], AIMessage) and result[1].tool_calls
    assert isinstance(result[2], ToolMessage)


def test_trim_messages_tool_group_boundary_exact_fit(trim_messages: Callable[..., Any]) -> None:
    result = trim_messages(
        _TOOL_CALL_MESSAGES, max_tokens=24, token_counter=dummy_token_counter, strategy="last"
    )
    assert len(result) == 2
    assert isinstance(result[0], AIMessage) and result[0].tool_calls
    assert isinstance(result[1], ToolMessage)


def test_get_message_group_boundaries() -> None:
    # upstream tests the private helper _get_message_group_boundaries; ours is group_boundaries
    assert group_boundaries(_TOOL_CALL_MESSAGES, LANGCHAIN_OPS) == [0, 1, 2, 3, 5]
    assert group_boundaries([], LANGCHAIN_OPS) == [0]
    simple = [HumanMessage("a"), AIMessage("b"), HumanMessage("c")]
    assert group_boundaries(simple, LANGCHAIN_OPS) == [0, 1, 2, 3]
    # the same groups on core messages
    assert group_boundaries(to_core(_TOOL_CALL_MESSAGES)) == [0, 1, 2, 3, 5]


def test_trim_messages_tool_forward_bound_tools(trim_messages: Callable[..., Any]) -> None:
    received_kwargs: dict[str, Any] = {}

    class _MockLLM:
        kwargs: ClassVar[dict[str, Any]] = {"tools": ["tool_a", "tool_b"]}

        def get_num_tokens_from_messages(
            self, messages: list[BaseMessage], tools: list[str] | None = None
        ) -> int:
            received_kwargs["tools"] = tools
            return len(messages) * 10

    trim_messages([HumanMessage("hi")], max_tokens=100, token_counter=_MockLLM())
    assert received_kwargs.get("tools") == ["tool_a", "tool_b"]


# ---------- beyond the upstream suite ----------


def test_released_langchain_orphans_tool_message_and_ours_does_not() -> None:
    """The bug the #29637 tests guard against, shown on the installed langchain-core."""
    from langchain_core.messages import trim_messages as lc_trim

    theirs = lc_trim(
        _TOOL_CALL_MESSAGES, max_tokens=15, token_counter=dummy_token_counter, strategy="last"
    )
    ours = trim_messages_compat(
        _TOOL_CALL_MESSAGES, max_tokens=15, token_counter=dummy_token_counter, strategy="last"
    )
    if theirs and isinstance(theirs[0], ToolMessage):  # released 1.7.x behaviour
        assert theirs == [_TOOL_CALL_MESSAGES[-1]]
    assert ours == []


def test_per_message_counter_under_future_annotations() -> None:
    """LangChain treats this annotated per-message counter as a list counter and crashes."""

    def per_msg(message: BaseMessage) -> int:
        return dummy_token_counter([message])

    assert counter_kind(per_msg) == "message"
    assert counter_kind(dummy_token_counter) == "list"
    out = trim_messages_compat(
        _MESSAGES_TO_TRIM, max_tokens=30, token_counter=per_msg, include_system=True
    )
    assert out == [_MESSAGES_TO_TRIM[0], *_MESSAGES_TO_TRIM[3:]]


def test_chunks_ids_and_blocks_survive_round_trip() -> None:
    chunk = AIMessageChunk(
        content=[{"type": "text", "text": "a\nb"}],
        id="c1",
        tool_calls=[{"name": "f", "args": {"x": 1}, "id": "t1", "type": "tool_call"}],
    )
    msgs = [HumanMessage("q", id="h1"), chunk, ToolMessage("r", tool_call_id="t1", id="t")]
    core = to_core(msgs)
    assert [m.role for m in core] == ["user", "assistant", "tool"]
    assert core[1].tool_calls[0].arguments == '{"x": 1}'
    assert core[1].id == "c1" and core[2].tool_call_id == "t1"
    back = from_core(core)
    assert all(a is b for a, b in zip(back, msgs, strict=True))
    import dataclasses

    cut = from_core_message(dataclasses.replace(core[1], content=[{"type": "text", "text": "a"}]))
    assert type(cut) is AIMessageChunk and cut.id == "c1" and cut.tool_calls == chunk.tool_calls
    assert cut.content == [{"type": "text", "text": "a"}]
    assert chunk.content == [{"type": "text", "text": "a\nb"}]  # original untouched


# ---------- differential: random conversations x options vs installed trim_messages ----------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from langchain_core.messages import trim_messages as lc_trim_messages  # noqa: E402


def _msg_tokens(m: BaseMessage) -> int:
    if isinstance(m.content, str):
        return 3 + len(m.content)
    n = 3
    for block in m.content:
        if isinstance(block, str):
            n += len(block)
        elif block.get("type") == "text":
            n += len(block["text"])
        else:
            n += 10
    return n


def _list_tokens(ms: list[BaseMessage]) -> int:
    return sum(_msg_tokens(m) for m in ms)


_text = st.text(alphabet="ab \n.", max_size=12)
_content = st.one_of(
    _text,
    st.lists(
        st.one_of(
            _text.map(lambda t: {"type": "text", "text": t}),
            st.just({"type": "image_url", "image_url": {"url": "x"}}),
        ),
        min_size=1,
        max_size=3,
    ),
)


@st.composite
def lc_conversations(draw: Any, tools: bool = False) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    if draw(st.booleans()):
        out.append(SystemMessage(draw(_content)))
    for k in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["human", "ai", "tool_turn"] if tools else ["human", "ai"]))
        if kind == "human":
            out.append(HumanMessage(draw(_content), id=f"h{k}"))
        elif kind == "ai":
            out.append(AIMessage(draw(_content), id=f"a{k}"))
        else:
            n = draw(st.integers(1, 2))
            calls = [
                {"name": "f", "args": {"k": k}, "id": f"c{k}.{j}", "type": "tool_call"}
                for j in range(n)
            ]
            out.append(AIMessage(draw(_text), tool_calls=calls, id=f"t{k}"))
            out.extend(
                ToolMessage(draw(_text), tool_call_id=f"c{k}.{j}", id=f"r{k}.{j}") for j in range(n)
            )
    return out


_type_specs = st.sampled_from([None, "human", "ai", HumanMessage, ["human", AIMessage], "system"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conv=lc_conversations(),
    budget=st.integers(0, 60),
    strategy=st.sampled_from(["last", "first"]),
    include_system=st.booleans(),
    start_on=_type_specs,
    end_on=_type_specs,
    allow_partial=st.booleans(),
    per_msg=st.booleans(),
)
def test_differential_against_installed_trim_messages(
    conv: list[BaseMessage],
    budget: int,
    strategy: str,
    include_system: bool,
    start_on: Any,
    end_on: Any,
    allow_partial: bool,
    per_msg: bool,
) -> None:
    kw: dict[str, Any] = dict(
        max_tokens=budget, strategy=strategy, end_on=end_on, allow_partial=allow_partial
    )
    if strategy == "last":
        kw.update(include_system=include_system, start_on=start_on)
    expected = lc_trim_messages(conv, token_counter=_list_tokens, **kw)
    ours = trim_messages_compat(
        conv, token_counter=per_message(_msg_tokens) if per_msg else _list_tokens, **kw
    )
    assert ours == expected
    via_core = _trim_via_core(conv, token_counter=_list_tokens, **kw)
    assert via_core == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conv=lc_conversations(tools=True),
    budget=st.integers(0, 80),
    strategy=st.sampled_from(["last", "first"]),
    start_on=_type_specs,
    end_on=_type_specs,
    allow_partial=st.booleans(),
)
def test_tool_groups_never_split_and_budget_kept(
    conv: list[BaseMessage],
    budget: int,
    strategy: str,
    start_on: Any,
    end_on: Any,
    allow_partial: bool,
) -> None:
    kw: dict[str, Any] = dict(
        max_tokens=budget, strategy=strategy, end_on=end_on, allow_partial=allow_partial
    )
    if strategy == "last":
        kw.update(include_system=True, start_on=start_on)
    out = trim_messages_compat(conv, token_counter=per_message(_msg_tokens), **kw)
    system_over = (
        bool(conv) and isinstance(conv[0], SystemMessage) and _msg_tokens(conv[0]) > budget
    )
    if not (strategy == "last" and system_over):
        assert _list_tokens(out) <= budget
    kept_ids = {m.id for m in out}
    for i, m in enumerate(conv):
        if isinstance(m, AIMessage) and m.tool_calls:
            group = [m]
            j = i + 1
            while j < len(conv) and isinstance(conv[j], ToolMessage):
                group.append(conv[j])
                j += 1
            assert len({g.id in kept_ids for g in group}) == 1, "tool group split"
    for i, m in enumerate(out):
        if isinstance(m, ToolMessage):
            assert i > 0 and isinstance(out[i - 1], (AIMessage, ToolMessage))
    has_tools = any(isinstance(m, ToolMessage) for m in conv)
    if not has_tools:
        assert out == lc_trim_messages(conv, token_counter=_list_tokens, **kw)


def test_compat_pinned_and_summarizer_on_langchain_messages() -> None:
    msgs = [SystemMessage("sys"), HumanMessage("the task", id="task")] + [
        (HumanMessage if i % 2 == 0 else AIMessage)(f"turn {i}", id=f"m{i}") for i in range(8)
    ]
    out = trim_messages_compat(
        msgs,
        max_tokens=50,
        token_counter=dummy_token_counter,
        include_system=True,
        start_on="human",
        pinned=[1],
        summarizer=lambda dropped: f"{len(dropped)} earlier messages",
    )
    # system 10 + pinned 10 + summary 10 leaves 20: the last two turns
    assert out[0] is msgs[0] and out[1] is msgs[1]
    assert isinstance(out[2], HumanMessage) and out[2].content == "6 earlier messages"
    assert out[3:] == msgs[-2:]
    assert dummy_token_counter(out) <= 50
