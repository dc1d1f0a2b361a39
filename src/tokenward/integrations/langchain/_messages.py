"""LangChain ``BaseMessage`` <-> core :class:`tokenward.messages.Message`, and trimming.

Small on purpose; the LangChain runnables (``HistoryTrimmer``...) build on it.

* :func:`to_core` converts a list of ``BaseMessage`` to core ``Message`` objects, keeping
  the original object in ``Message.source`` (role, content blocks as-is, name,
  ``tool_calls`` as JSON-argument :class:`~tokenward.messages.ToolCall`, ``tool_call_id``,
  ``id``).
* :func:`from_core` converts back: a message whose content is unchanged returns its
  original object (same type, so ``AIMessageChunk`` stays a chunk, ids and metadata kept);
  a message cut by trimming returns a deep copy of the original with the new content;
  a message with no LangChain source (e.g. a summary) becomes a new ``BaseMessage`` of
  the matching class.
* :func:`trim_messages_compat` has ``langchain_core.messages.trim_messages``'s signature
  and results (plus tokenward's options), running tokenward's trimming directly on the
  ``BaseMessage`` objects: nothing is converted, the counter sees the original objects,
  and only the messages that decide the answer are counted.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)

from tokenward.context._cache import CacheAwareTrim
from tokenward.context._counters import MessageCounts, per_list
from tokenward.context._trim import MessageOps, coerce_first, trim_items
from tokenward.messages import Message, ToolCall

__all__ = [
    "LANGCHAIN_OPS",
    "from_core",
    "from_core_message",
    "langchain_counter",
    "to_core",
    "to_core_message",
    "trim_messages_compat",
]


def _role(m: BaseMessage) -> str:
    if isinstance(m, AIMessage):
        return "assistant"
    if isinstance(m, HumanMessage):
        return "user"
    if isinstance(m, SystemMessage):
        role = m.additional_kwargs.get("__openai_role__")
        return role if role == "developer" else "system"
    if isinstance(m, ToolMessage):
        return "tool"
    if isinstance(m, FunctionMessage):
        return "function"
    if isinstance(m, ChatMessage):
        return m.role
    return str(m.type)


def to_core_message(m: BaseMessage) -> Message:
    """One ``BaseMessage`` as a core ``Message`` (original kept in ``source``)."""
    calls: tuple[ToolCall, ...] = ()
    if isinstance(m, AIMessage) and m.tool_calls:
        calls = tuple(
            ToolCall(
                id=str(tc.get("id") or ""),
                name=str(tc.get("name") or ""),
                arguments=json.dumps(tc.get("args") or {}, ensure_ascii=False),
            )
            for tc in m.tool_calls
        )
    return Message(
        role=_role(m),
        content=m.content,
        name=m.name,
        tool_calls=calls,
        tool_call_id=getattr(m, "tool_call_id", None) if isinstance(m, ToolMessage) else None,
        id=m.id,
        source=m,
    )


def to_core(messages: Sequence[BaseMessage]) -> list[Message]:
    """Convert ``BaseMessage`` objects to core messages (see module docstring)."""
    return [to_core_message(m) for m in messages]


def _with_content(m: BaseMessage, content: Any) -> BaseMessage:
    out = m.model_copy(deep=True)
    out.content = copy.deepcopy(content) if isinstance(content, list) else content
    return out


def from_core_message(m: Message) -> BaseMessage:
    """One core ``Message`` back as a ``BaseMessage`` (the original when unchanged)."""
    src = m.source
    if isinstance(src, BaseMessage):
        if m.content is src.content or m.content == src.content:
            return src
        return _with_content(src, m.content)
    content = list(m.content) if isinstance(m.content, tuple) else m.content
    kwargs: dict[str, Any] = {"content": content, "id": m.id}
    if m.name:
        kwargs["name"] = m.name
    if m.role == "user":
        return HumanMessage(**kwargs)
    if m.role == "assistant":
        if m.tool_calls:
            kwargs["tool_calls"] = [
                {
                    "id": c.id,
                    "name": c.name,
                    "args": json.loads(c.arguments or "{}"),
                    "type": "tool_call",
                }
                for c in m.tool_calls
            ]
        return AIMessage(**kwargs)
    if m.role == "system":
        return SystemMessage(**kwargs)
    if m.role == "developer":
        return SystemMessage(**kwargs, additional_kwargs={"__openai_role__": "developer"})
    if m.role == "tool":
        return ToolMessage(**kwargs, tool_call_id=m.tool_call_id or "")
    if m.role == "function":
        return FunctionMessage(**{**kwargs, "name": m.name or ""})
    return ChatMessage(**kwargs, role=m.role)


def from_core(messages: Sequence[Message]) -> list[BaseMessage]:
    """Convert core messages back to ``BaseMessage`` objects (see module docstring)."""
    return [from_core_message(m) for m in messages]


def _summary(value: Any) -> BaseMessage:
    if isinstance(value, BaseMessage):
        return value
    if isinstance(value, Message):
        return from_core_message(value)
    if isinstance(value, str):
        return HumanMessage(value)
    return convert_to_messages([value])[0]


LANGCHAIN_OPS = MessageOps(
    is_system=lambda m: isinstance(m, SystemMessage),
    is_tool=lambda m: isinstance(m, ToolMessage),
    has_tool_calls=lambda m: isinstance(m, AIMessage) and bool(m.tool_calls),
    content=lambda m: m.content,
    with_content=_with_content,
    make_summary=_summary,
    kind=BaseMessage,
    coerce=lambda m: convert_to_messages([m])[0],
)


def _type_predicate(spec: Any) -> Callable[[BaseMessage], bool] | None:
    """LangChain's message-type matching: ``message.type`` names or classes."""
    if spec is None:
        return None
    if callable(spec) and not isinstance(spec, str | type):
        return cast("Callable[[BaseMessage], bool]", spec)
    specs = [spec] if isinstance(spec, str | type) else list(spec)
    names = {s for s in specs if isinstance(s, str)}
    classes = tuple(s for s in specs if isinstance(s, type))

    def match(m: BaseMessage) -> bool:
        return m.type in names or isinstance(m, classes)

    return match


def langchain_counter(token_counter: Any) -> Any:
    """Turn a LangChain ``token_counter`` into a tokenward counter over ``BaseMessage``.

    Accepts what ``trim_messages`` accepts (a model with ``get_num_tokens_from_messages``,
    whose bound tools are forwarded; ``"approximate"``; a per-message or list callable,
    told apart robustly even under ``from __future__ import annotations``) plus a
    tokenward ``TokenCounter`` or model name.
    """
    if isinstance(token_counter, str):
        if token_counter == "approximate":
            from langchain_core.messages.utils import count_tokens_approximately

            return count_tokens_approximately
        try:
            from tokenward.catalog import default_catalog
            from tokenward.counting import get_counter, is_registered

            if is_registered(token_counter) or default_catalog().find(token_counter) is not None:
                return get_counter(token_counter)
        except ImportError:  # pragma: no cover - counting/catalog not installed
            pass
        raise ValueError(
            f"Invalid token_counter shortcut {token_counter!r}. Available shortcuts: "
            f"'approximate' (or a model name known to tokenward)."
        )
    if hasattr(token_counter, "count_message") and hasattr(token_counter, "count_messages"):
        return token_counter
    if hasattr(token_counter, "get_num_tokens_from_messages"):
        fn = token_counter.get_num_tokens_from_messages
        bound = getattr(token_counter, "kwargs", None)
        if isinstance(bound, dict) and bound.get("tools"):
            return per_list(partial(fn, tools=bound["tools"]))
        return per_list(fn)
    if callable(token_counter):
        return token_counter
    raise ValueError(
        "'token_counter' expected to be a model that implements "
        "'get_num_tokens_from_messages()' or a function. "
        f"Received object of type {type(token_counter)}."
    )


def _trim(messages: Any, **kwargs: Any) -> list[BaseMessage]:
    return cast("list[BaseMessage]", trim_messages_compat(messages, **kwargs))


def trim_messages_compat(
    messages: Any = None,
    *,
    max_tokens: int,
    token_counter: Any,
    strategy: str = "last",
    allow_partial: bool = False,
    end_on: Any = None,
    start_on: Any = None,
    include_system: bool = False,
    text_splitter: Any = None,
    keep_tool_pairs: bool = True,
    pinned: Any = None,
    summarizer: Callable[[list[BaseMessage]], Any] | None = None,
    overflow: str = "keep",
    cache_aware: CacheAwareTrim | None = None,
) -> Any:
    """``trim_messages`` with tokenward's algorithm (same signature, same results).

    Called without ``messages`` it returns a ``RunnableLambda`` like ``trim_messages``.
    Extra options: ``keep_tool_pairs`` (default True), ``pinned``, ``summarizer``,
    ``overflow`` (default ``"keep"``: LangChain's behaviour when the system message alone
    exceeds the budget), ``cache_aware`` (the conversation's
    :class:`~tokenward.context.CacheAwareTrim`: the cut holds until the high-water mark
    ``max_tokens``; one state per conversation, :class:`HistoryTrimmer` keeps them per
    thread). See :func:`tokenward.context.trim_history`.
    """
    kwargs = dict(
        max_tokens=max_tokens,
        token_counter=token_counter,
        strategy=strategy,
        allow_partial=allow_partial,
        end_on=end_on,
        start_on=start_on,
        include_system=include_system,
        text_splitter=text_splitter,
        keep_tool_pairs=keep_tool_pairs,
        pinned=pinned,
        summarizer=summarizer,
        overflow=overflow,
        cache_aware=cache_aware,
    )
    if messages is None:
        from langchain_core.runnables import RunnableLambda

        return RunnableLambda(partial(_trim, **kwargs), name="trim_messages")
    if start_on and strategy == "first":
        raise ValueError("start_on parameter is only valid with strategy='last'")
    if include_system and strategy == "first":
        raise ValueError("include_system parameter is only valid with strategy='last'")
    if hasattr(messages, "to_messages"):  # PromptValue
        messages = messages.to_messages()
    # dicts, tuples and strings are converted as the trim looks at them (convert_to_messages
    # converts each on its own): the first now, since counters are probed with it
    items = coerce_first(messages if isinstance(messages, list) else list(messages), LANGCHAIN_OPS)
    counter = langchain_counter(token_counter)
    counts = MessageCounts(items, counter, to_message=to_core_message)
    return trim_items(
        items,
        max_tokens,
        counts,
        LANGCHAIN_OPS,
        strategy=strategy,
        include_system=include_system,
        start_on=_type_predicate(start_on),
        end_on=_type_predicate(end_on),
        allow_partial=allow_partial,
        text_splitter=text_splitter,
        keep_tool_pairs=keep_tool_pairs,
        pinned=pinned,
        summarizer=summarizer,
        overflow=overflow,
        partial_order="langchain",
        cache_aware=cache_aware,
    )
