"""What a call is expected to cost before it is made, counted only when someone needs it.

An exact prompt count costs tens of microseconds; most calls never need one (no hard
budget applies, and the provider reports the real usage afterwards). So an
:class:`Estimate` keeps the prompt and counts it the first time ``prompt_tokens`` (or
``cost``...) is read, once. Budgets get a cheaper answer first: :func:`prompt_bound`, an
upper bound from the prompt's size in UTF-8 bytes (a token of the byte-level BPE
tokenizers tokenward counts with is at least one byte), and the exact count only when
that bound does not fit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tokenward.messages import Message, ToolCall

if TYPE_CHECKING:
    from tokenward.catalog import Catalog, ModelInfo

__all__ = ["Estimate", "LazyMessages", "Prompt", "expected_output", "prompt_bound"]


class LazyMessages:
    """A framework's prompt, converted to core messages only when it must be counted.

    ``raw`` is the framework's own message objects (anything with a ``content`` attribute:
    LangChain ``BaseMessage``, LlamaIndex ``ChatMessage``), enough for :func:`prompt_bound`;
    ``convert(raw)`` returns dicts or :class:`~tokenward.Message` for an exact count.
    """

    __slots__ = ("convert", "raw")

    def __init__(self, raw: Sequence[Any], convert: Callable[[Sequence[Any]], Sequence[Any]]):
        self.raw = raw
        self.convert = convert

    def __call__(self) -> Sequence[Any]:
        return self.convert(self.raw)


#: Messages, or a zero-argument callable returning them (called only when a count is needed).
Prompt = Sequence[Any] | Callable[[], Sequence[Any]]

_TEXT_PARTS = ("text", "input_text")
#: Call kinds whose prompt is billed as plain text (no chat framing): embedding inputs and a
#: completion's prompt.
_PLAIN_TEXT = ("embedding", "completion")
_PER_MESSAGE = 8  # role, separators and the per-message overhead of every chat format
_PER_PROMPT = 8  # reply priming
_PER_TOOL_CALL = 16


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _text(message: Any) -> str:
    if isinstance(message, Message):
        return message.text
    if isinstance(message, Mapping):
        return str(message.get("content") or "")
    return str(message)


_MAPPING, _MESSAGE, _OBJECT = 1, 2, 3
#: message type -> how prompt_bound reads it: as a Mapping, a core Message, or by its fields
_KINDS: dict[type, int] = {dict: _MAPPING}


def _kind(cls: type) -> int:
    """How messages of type ``cls`` are read (an ABC check is slow: once per type)."""
    kind = _KINDS[cls] = (
        _MAPPING if issubclass(cls, Mapping) else _MESSAGE if issubclass(cls, Message) else _OBJECT
    )
    return kind


def prompt_bound(messages: Sequence[Any], tools: Sequence[Any] | None) -> int | None:
    """An upper bound of the prompt's tokens in O(size) without a tokenizer, or ``None`` when
    the prompt holds content whose count does not follow from its size (images, documents,
    audio, provider blocks): those are counted exactly. Takes dicts, core messages, or any
    message object with ``content`` (and ``tool_calls``) attributes."""
    total = _PER_PROMPT
    for m in messages:
        kind = _KINDS.get(type(m)) or _kind(type(m))
        if kind == _OBJECT:  # a framework's message (LangChain BaseMessage, LlamaIndex ChatMessage)
            fields = getattr(m, "__dict__", None)
            if not isinstance(fields, dict) or ("content" not in fields and "blocks" not in fields):
                return None
            blocks = fields.get("blocks")  # LlamaIndex: ``content`` is the text blocks only
            content = [getattr(b, "text", b) for b in blocks] if blocks else fields.get("content")
            name = fields.get("name")
            if name:
                total += _size(str(name))
            calls: Any = fields.get("tool_calls")
        elif kind == _MAPPING:
            content = m.get("content")
            total += _size(str(m.get("role", ""))) + _size(str(m.get("name") or ""))
            calls = m.get("tool_calls")
        else:
            content = m.content
            if m.name:
                total += _size(m.name)
            calls = m.tool_calls
        total += _PER_MESSAGE
        if calls:
            for call in calls:
                total += _PER_TOOL_CALL + _size(json.dumps(_plain(call), default=str))
        if isinstance(content, str):
            total += _size(content)
        elif content:
            for part in content:
                if isinstance(part, str):
                    total += _size(part)
                elif isinstance(part, Mapping) and part.get("type") in _TEXT_PARTS:
                    total += _size(str(part.get("text", "")))
                else:
                    return None
    if tools:
        total += _size(json.dumps(list(tools), default=str)) + _PER_TOOL_CALL * len(tools)
    return total


def _plain(call: Any) -> Any:
    if isinstance(call, ToolCall):
        return (call.name, call.arguments)
    return call


def expected_output(
    info: ModelInfo, default: int, max_output_tokens: int | None, prompt_tokens: int | None
) -> int:
    """Output tokens an estimate assumes: the caller's cap, else ``default`` capped by the
    model's max output and (when the prompt is counted) by what is left of its window."""
    if max_output_tokens is not None:
        return max_output_tokens
    expected = default
    if info.max_output:
        expected = min(expected, info.max_output)
    if prompt_tokens is not None and info.context_window and prompt_tokens < info.context_window:
        expected = min(expected, info.context_window - prompt_tokens)
    return expected


class Estimate:
    """What :meth:`Accountant.preflight` expects a call to cost.

    ``prompt_tokens`` is the input count (``exact`` says whether a real tokenizer produced
    it), ``expected_output`` the output tokens assumed, ``cost`` the USD amount priced by the
    same function as the final bill (``None`` when the model has no known price). The
    prompt is counted the first time one of these is read. ``reserved`` says whether a
    budget holds an amount for the call (which may be an upper bound of this estimate).
    """

    __slots__ = (
        "_catalog",
        "_cost",
        "_default_output",
        "_exact",
        "_info",
        "_max_output",
        "_prompt",
        "_prompt_tokens",
        "_tools",
        "kind",
        "model",
        "provider",
        "reserved",
        "run_id",
    )

    def __init__(
        self,
        run_id: str,
        model: str,
        info: ModelInfo,
        catalog: Catalog,
        *,
        prompt: Prompt | None,
        tools: Sequence[Any] | None,
        prompt_tokens: int | None,
        max_output_tokens: int | None,
        default_output: int,
        kind: str,
    ) -> None:
        self.run_id = run_id
        self.model = model
        self.provider = info.provider
        self.kind = kind
        self.reserved = False
        self._info = info
        self._catalog = catalog
        self._prompt = prompt
        self._tools = tools
        self._prompt_tokens = prompt_tokens
        self._exact = True
        self._max_output = 0 if kind == "embedding" else max_output_tokens
        self._default_output = default_output
        self._cost: Decimal | None = None

    @property
    def counted(self) -> bool:
        """Whether the prompt was counted (or its count was given)."""
        return self._prompt_tokens is not None

    def messages(self) -> Sequence[Any]:
        """The prompt's messages (converted from the adapter's form on first use)."""
        prompt = self._prompt
        if prompt is None:
            return ()
        if callable(prompt):
            prompt = self._prompt = prompt()
        return prompt

    def text(self) -> str:
        """The prompt as ``role: text`` lines (what ``store_content=True`` keeps)."""
        from tokenward._hygiene import clean

        lines = (f"{m.role}: {m.text}" for m in map(Message.from_openai, self.messages()))
        return clean("\n".join(lines))

    def bound(self) -> int | None:
        """An upper bound of the prompt tokens without counting (``None``: count instead)."""
        if self._prompt_tokens is not None:
            return self._prompt_tokens
        prompt = self._prompt
        if isinstance(prompt, LazyMessages):  # bounded from the framework's own objects
            return prompt_bound(prompt.raw, self._tools)
        return prompt_bound(self.messages(), self._tools)

    @property
    def prompt_tokens(self) -> int:
        """Input tokens of the prompt (counted on first read).

        No lock: two threads reading it first at once both count the same prompt with the
        same counter and store the same result (``_exact`` before ``_prompt_tokens``, which
        says it is counted)."""
        if self._prompt_tokens is None:
            from tokenward.counting import get_counter

            counter = get_counter(self._info.name, catalog=self._catalog)
            messages = self.messages()
            tools = self._tools
            exact = bool(counter.exact)
            if self.kind in _PLAIN_TEXT:  # inputs, not a chat: no message overhead
                count = sum(counter.count_text(_text(m)) for m in messages)
                exact = bool(getattr(counter, "text_exact", exact))
            elif messages or tools:
                # the detailed count says whether *this* count is exact (a provider
                # counter's fallback, an image of unknown size...)
                detailed = getattr(counter, "count_messages_detailed", None)
                if detailed is not None:
                    result = detailed(messages, tools=tools)
                    count, exact = result.tokens, bool(result.exact)
                else:
                    count = counter.count_messages(messages, tools=tools)
                    exact = bool(counter.exact)
            else:
                count = 0
            self._exact = exact
            self._prompt_tokens = count
        return self._prompt_tokens

    @property
    def exact(self) -> bool:
        """Whether ``prompt_tokens`` came from the model's own tokenizer (or was given)."""
        _ = self.prompt_tokens
        return self._exact

    @property
    def expected_output(self) -> int:
        """Output tokens assumed for the estimate (0 for embeddings)."""
        return expected_output(
            self._info, self._default_output, self._max_output, self.prompt_tokens
        )

    @property
    def tokens(self) -> int:
        """Input plus expected output tokens (what token budgets reserve)."""
        return self.prompt_tokens + self.expected_output

    @property
    def cost(self) -> Decimal | None:
        """The estimated cost in USD, ``None`` for a model with no known price."""
        if self._cost is None and self._info.priced:
            from tokenward.cost import estimate_nanos, from_nanos

            nanos = estimate_nanos(self._info, self.prompt_tokens, self.expected_output)
            self._cost = from_nanos(nanos) if nanos is not None else None
        return self._cost

    def __repr__(self) -> str:
        if not self.counted:
            return f"Estimate({self.run_id!r}, model={self.model!r}, not counted yet)"
        return (
            f"Estimate({self.run_id!r}, model={self.model!r}, prompt_tokens={self.prompt_tokens}, "
            f"exact={self.exact}, expected_output={self.expected_output}, cost={self.cost})"
        )
