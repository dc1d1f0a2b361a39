"""Chat-history trimming for LlamaIndex chat engines and agents, over core ``trim_history``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.llm import LLM
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.memory.types import DEFAULT_CHAT_STORE_KEY
from llama_index.core.storage.chat_store import BaseChatStore, SimpleChatStore

from tokenward.context import AddCheck, WindowStatus, per_message, trim_history
from tokenward.integrations.llama_index._common import model_from_llm, to_message, to_messages
from tokenward.messages import Message

__all__ = ["TokenwardChatMemory", "trim_chat_history"]

#: share of the context window used for history when only ``llm`` is given (as ChatMemoryBuffer)
_DEFAULT_TOKEN_LIMIT_RATIO = 0.75
_DEFAULT_TOKEN_LIMIT = 3000


def _counter_for(model: str | None, tokenizer_fn: Callable[[str], Sequence[Any]] | None) -> Any:
    if tokenizer_fn is not None:
        return per_message(lambda m: len(tokenizer_fn(m.text)))
    return model  # the core resolves a model name (None = its default) to a cached counter


def trim_chat_history(
    messages: Sequence[ChatMessage],
    max_tokens: int,
    *,
    llm: LLM | None = None,
    model: str | None = None,
    tokenizer_fn: Callable[[str], Sequence[Any]] | None = None,
    keep_system: bool = True,
    pinned: Iterable[int] | Callable[[ChatMessage], bool] | None = None,
    allow_partial: bool = False,
    start_on: Any = "user",
    overflow: Literal["raise", "keep"] = "keep",
) -> list[ChatMessage]:
    """Trim LlamaIndex ``ChatMessage`` s to ``max_tokens`` with :func:`tokenward.context.trim_history`.

    Newest messages are kept; the first system message is always kept
    (``keep_system``); an assistant message with tool calls is never separated
    from its tool results; ``pinned`` (indices or a ``ChatMessage`` predicate) are
    always kept; the window starts on a user message (``start_on``). Tokens are
    counted per message with the model's tokenizer (``model``, else ``llm``'s
    model, else the core default), or with ``tokenizer_fn`` if given. Returns the
    original objects (a message cut by ``allow_partial`` is a copy).

    Usable with the newer ``Memory`` class too:
    ``trim_chat_history(memory.get(), 8000, llm=llm)``.
    """
    if model is None and llm is not None:
        model = model_from_llm(llm)
    return _trim(
        to_messages(messages),
        max_tokens,
        model=model,
        tokenizer_fn=tokenizer_fn,
        keep_system=keep_system,
        pinned=pinned,
        allow_partial=allow_partial,
        start_on=start_on,
        overflow=overflow,
    )


def _trim(
    core: list[Message],
    max_tokens: int,
    *,
    model: str | None,
    tokenizer_fn: Callable[[str], Sequence[Any]] | None,
    keep_system: bool,
    pinned: Any,
    allow_partial: bool,
    start_on: Any,
    overflow: Literal["raise", "keep"],
) -> list[ChatMessage]:
    pin: Any = pinned
    if callable(pinned):
        predicate = pinned
        pin = lambda m: bool(predicate(m.source))  # noqa: E731
    kept = trim_history(
        core,
        max_tokens,
        _counter_for(model, tokenizer_fn),
        include_system=keep_system,
        start_on=start_on,
        allow_partial=allow_partial,
        pinned=pin,
        overflow=overflow,
    )
    originals = {id(m) for m in core}
    return [m.source if id(m) in originals else _rebuild(m) for m in kept]


def _rebuild(message: Message) -> ChatMessage:
    """A ChatMessage for a message the trimmer cut (same role and extras, shorter text)."""
    src: ChatMessage = message.source
    return ChatMessage(
        role=src.role, content=message.text, additional_kwargs=dict(src.additional_kwargs)
    )


class TokenwardChatMemory(ChatMemoryBuffer):
    """A ``ChatMemoryBuffer`` drop-in whose ``get()`` trims with tokenward.

    Differences from ``ChatMemoryBuffer`` (same store, same ``from_defaults``):

    * the system message is kept (ChatMemoryBuffer drops it with the oldest turns);
    * an assistant tool call and its tool results are kept or dropped together;
    * ``pinned`` messages are always kept;
    * tokens are counted per message with the model's tokenizer (chat overhead
      included) and cached by content, so each turn costs O(new messages)
      instead of re-tokenizing the whole window per dropped message.

    Use it wherever a memory is accepted::

        memory = TokenwardChatMemory.from_defaults(token_limit=8000, llm=llm)
        index.as_chat_engine(memory=memory)
        SimpleChatEngine.from_defaults(llm=llm, memory=memory)
        FunctionAgent(...).run(msg, memory=memory)
    """

    model: str | None = Field(default=None, description="Model whose tokenizer counts tokens.")
    keep_system: bool = Field(default=True, description="Always keep the first system message.")
    allow_partial: bool = Field(
        default=False, description="Cut the oldest message that does not fit."
    )
    start_on: Any = Field(default="user", description="Role the kept window starts on (None: any).")
    overflow: Literal["raise", "keep"] = Field(
        default="keep", description="When system + pinned alone exceed the limit."
    )
    pinned: Any = Field(
        default=None, exclude=True, description="Indices or a ChatMessage predicate always kept."
    )
    custom_tokenizer: bool = Field(default=False, exclude=True)
    _conversions: dict[int, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def class_name(cls) -> str:
        return "TokenwardChatMemory"

    @classmethod
    def from_defaults(  # type: ignore[override]
        cls,
        chat_history: list[ChatMessage] | None = None,
        llm: LLM | None = None,
        chat_store: BaseChatStore | None = None,
        chat_store_key: str = DEFAULT_CHAT_STORE_KEY,
        token_limit: int | None = None,
        tokenizer_fn: Callable[[str], list[Any]] | None = None,
        *,
        model: str | None = None,
        keep_system: bool = True,
        pinned: Iterable[int] | Callable[[ChatMessage], bool] | None = None,
        allow_partial: bool = False,
        start_on: Any = "user",
        overflow: Literal["raise", "keep"] = "keep",
    ) -> TokenwardChatMemory:
        """Like ``ChatMemoryBuffer.from_defaults``; ``llm`` sets the model and default limit."""
        if llm is not None:
            token_limit = token_limit or int(
                llm.metadata.context_window * _DEFAULT_TOKEN_LIMIT_RATIO
            )
            model = model or model_from_llm(llm)
        elif token_limit is None:
            token_limit = _DEFAULT_TOKEN_LIMIT
        if chat_history is not None:
            chat_store = chat_store or SimpleChatStore()
            chat_store.set_messages(chat_store_key, chat_history)
        extra: dict[str, Any] = {}
        if tokenizer_fn is not None:
            extra = {"tokenizer_fn": tokenizer_fn, "custom_tokenizer": True}
        return cls(
            token_limit=token_limit,
            chat_store=chat_store or SimpleChatStore(),
            chat_store_key=chat_store_key,
            model=model,
            keep_system=keep_system,
            pinned=list(pinned) if pinned is not None and not callable(pinned) else pinned,
            allow_partial=allow_partial,
            start_on=start_on,
            overflow=overflow,
            **extra,
        )

    def get(
        self, input: str | None = None, initial_token_count: int = 0, **kwargs: Any
    ) -> list[ChatMessage]:
        """The newest history that fits ``token_limit - initial_token_count``."""
        if initial_token_count > self.token_limit:
            raise ValueError("Initial token count exceeds token limit")
        history = self.get_all()
        if not history:
            return []
        return _trim(
            self._converted(history),
            self.token_limit - initial_token_count,
            model=self.model,
            tokenizer_fn=self.tokenizer_fn if self.custom_tokenizer else None,
            keep_system=self.keep_system,
            pinned=self.pinned,
            allow_partial=self.allow_partial,
            start_on=self.start_on,
            overflow=self.overflow,
        )

    def _converted(self, history: list[ChatMessage]) -> list[Message]:
        """Core messages for ``history``, reusing last turn's conversions of unchanged messages.

        A chat engine calls ``get()`` every turn on a history that only grew; converting
        each stored message again would cost more than trimming it.
        """
        old = self._conversions
        new: dict[int, tuple[ChatMessage, Any, Any, Any, Message]] = {}
        out = []
        for m in history:
            blocks, extra = m.blocks, m.additional_kwargs
            text = blocks[0].text if len(blocks) == 1 and hasattr(blocks[0], "text") else None
            hit = old.get(id(m))
            if (
                hit is not None
                and hit[0] is m
                and hit[1] is blocks
                and hit[2] is extra
                and hit[3] is text
                and text is not None
            ):
                converted = hit[4]
            else:
                converted = to_message(m)
            new[id(m)] = (m, blocks, extra, text, converted)
            out.append(converted)
        self._conversions = new
        return out

    # -- context limits (tokenward.context) ------------------------------------------------
    def _limit_model(self, model: str | None) -> str:
        name = model or self.model
        if name is None:
            from tokenward.errors import ConfigurationError

            raise ConfigurationError(
                "this memory has no model to read a context window from; pass model='...' "
                "or build it with TokenwardChatMemory.from_defaults(llm=...)"
            )
        return name

    def window_status(self, model: str | None = None) -> WindowStatus:
        """How full ``model``'s context window (default: the memory's model) is with the whole
        stored history: used, remaining, messages remaining (:func:`tokenward.context.window_status`)."""
        from tokenward.context import window_status

        return window_status(to_messages(self.get_all()), self._limit_model(model))

    def can_add(self, message: ChatMessage, model: str | None = None) -> AddCheck:
        """Whether ``message`` still fits after the stored history, and the cheapest remedy when
        it does not (:func:`tokenward.context.can_add`)."""
        from tokenward.context import can_add

        return can_add(to_messages(self.get_all()), to_message(message), self._limit_model(model))
