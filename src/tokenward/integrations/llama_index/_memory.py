"""Chat-history trimming for LlamaIndex chat engines and agents, over core ``trim_history``."""

from __future__ import annotations

import functools
import json
import logging
import pickle
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    field_serializer,
    model_validator,
)
from llama_index.core.llms.llm import LLM
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.memory.types import DEFAULT_CHAT_STORE_KEY
from llama_index.core.storage.chat_store import BaseChatStore, SimpleChatStore
from llama_index.core.utils import get_tokenizer

from tokenward.context import (
    AddCheck,
    CacheAwareTrim,
    WindowStatus,
    per_message,
    trim_history,
)
from tokenward.errors import ConfigurationError
from tokenward.integrations.llama_index._common import model_from_llm, to_message, to_messages
from tokenward.messages import Message

__all__ = ["TokenwardChatMemory", "trim_chat_history"]

#: share of the context window used for history when only ``llm`` is given (as ChatMemoryBuffer)
_DEFAULT_TOKEN_LIMIT_RATIO = 0.75
_DEFAULT_TOKEN_LIMIT = 3000


logger = logging.getLogger("tokenward.integrations.llama_index")

_TIKTOKEN = "tiktoken:"
_CUSTOM = "custom:"
_PREDICATE = "predicate:"


def _text_counter(tokenizer_fn: Callable[[str], Sequence[Any]]) -> Callable[[Message], int]:
    """Tokens of a message's text and tool calls (no chat framing), as ``ChatMemoryBuffer``
    counts ``str(message.content)`` with its ``tokenizer_fn``."""

    def count(message: Message) -> int:
        text = message.text + "".join(c.name + c.arguments for c in message.tool_calls)
        return len(tokenizer_fn(text))

    return count


def _counter_for(model: str | None, tokenizer_fn: Callable[[str], Sequence[Any]] | None) -> Any:
    """A per-message counter: the user's tokenizer, else the model's own (chat overhead
    included), else LlamaIndex's global tokenizer on the text (``ChatMemoryBuffer``'s way)."""
    if tokenizer_fn is not None:
        return per_message(_text_counter(tokenizer_fn))
    if model is not None:
        return model  # the core resolves it to a cached counter for that model
    return per_message(_text_counter(get_tokenizer()))


def describe_tokenizer(tokenizer_fn: Callable[..., Any]) -> str:
    """A serializable name for ``tokenizer_fn``: ``"tiktoken:<encoding>"`` for a tiktoken
    ``encode`` (bare, bound or in a ``functools.partial``), else ``"custom:<qualname>"``."""
    target = tokenizer_fn.func if isinstance(tokenizer_fn, functools.partial) else tokenizer_fn
    encoding = getattr(target, "__self__", None)
    name = getattr(encoding, "name", None)
    if getattr(target, "__name__", None) in ("encode", "encode_ordinary") and isinstance(name, str):
        try:
            import tiktoken
        except ImportError:  # pragma: no cover - tiktoken is a core dependency
            pass
        else:
            if isinstance(encoding, tiktoken.Encoding):
                return _TIKTOKEN + name
    return _CUSTOM + str(getattr(tokenizer_fn, "__qualname__", type(tokenizer_fn).__name__))


def _tokenizer_from(description: str) -> Callable[[str], list[int]] | None:
    """The tokenizer a description names, when it can be rebuilt (tiktoken encodings)."""
    if not description.startswith(_TIKTOKEN):
        return None
    from tokenward.counting import get_encoding

    encoding = get_encoding(description[len(_TIKTOKEN) :])
    return functools.partial(encoding.encode, allowed_special="all")


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
    cache_aware: CacheAwareTrim | None = None,
) -> list[ChatMessage]:
    """Trim LlamaIndex ``ChatMessage`` s to ``max_tokens`` with :func:`tokenward.context.trim_history`.

    Newest messages are kept; the first system message is always kept
    (``keep_system``); an assistant message with tool calls is never separated
    from its tool results; ``pinned`` (indices or a ``ChatMessage`` predicate) are
    always kept; the window starts on a user message (``start_on``). Tokens are
    counted per message with ``tokenizer_fn`` if given (message text), else with the
    model's tokenizer and chat formula (``model``, else ``llm``'s model), else like
    ``ChatMemoryBuffer``: the text with LlamaIndex's global tokenizer
    (``Settings.tokenizer``). Returns the original objects (a message cut by
    ``allow_partial`` is a copy).

    Usable with the newer ``Memory`` class too:
    ``trim_chat_history(memory.get(), 8000, llm=llm)``.

    ``cache_aware``: the conversation's :class:`~tokenward.context.CacheAwareTrim` (keep
    one per conversation): the oldest kept message holds until the history from it no
    longer fits ``max_tokens``, then the history is cut back to its ``low_water`` once.
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
        cache_aware=cache_aware,
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
    cache_aware: CacheAwareTrim | None = None,
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
        cache_aware=cache_aware,
    )
    originals = {id(m) for m in core}
    return [m.source if id(m) in originals else _rebuild(m) for m in kept]


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - pickle raises many kinds (PicklingError, TypeError...)
        return False
    return True


def _size(
    message: Message, model: str | None, tokenizer_fn: Callable[[str], Sequence[Any]] | None
) -> int:
    """Tokens of ``message`` alone, counted as the trimmer counts it."""
    counter = _counter_for(model, tokenizer_fn)
    if isinstance(counter, str):
        from tokenward.counting import get_counter

        return get_counter(counter).count_messages([message])
    return int(counter(message))


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
    * with ``llm=`` or ``model=`` tokens are counted with that model's tokenizer and
      chat formula (per-message overhead included: what the provider bills), cached
      by content, so each turn costs O(new messages) instead of re-tokenizing the
      window per dropped message. Without either it counts as ChatMemoryBuffer does:
      message text with ``tokenizer_fn`` (default: LlamaIndex's global tokenizer).

    As in ChatMemoryBuffer, when the newest message alone exceeds the limit it is
    returned anyway (after the system message), so the model reports the overflow
    instead of silently answering without the question.

    Serialization (``to_dict``/``from_dict``, ``to_string``/``from_string``,
    ``model_dump``/``model_validate``, pickle) keeps the configuration: ``model``,
    ``token_limit``, ``pinned`` indices, the trimming options, and ``tokenizer``, a
    description of ``tokenizer_fn`` (``"tiktoken:cl100k_base"`` is rebuilt on load).
    A custom ``tokenizer_fn`` or a ``pinned`` predicate cannot be serialized: give
    them again when loading, ``TokenwardChatMemory.from_dict(data, tokenizer_fn=fn,
    pinned=predicate)`` (also ``from_string``); until then ``get()`` logs a warning
    and counts with the default tokenizer / pins nothing.

    Keeping the prompt cache warm (``cache_aware=True``, ``"anthropic"`` or ``"openai"``):
    ``get()`` keeps the oldest kept message the same from turn to turn while the history
    from it fits ``token_limit`` (the high-water mark), so the provider's prompt cache
    keeps hitting; when it no longer fits, the history is cut once, back to ``low_water``
    (a fraction of the limit or a token count; default 0.6). Needs ``allow_partial=False``.
    The cut point is a field (``cache_snapshot``: positions in the stored history), so it
    survives ``to_dict``/``from_dict``, ``to_string``, ``model_dump`` and pickle with the
    chat store; :attr:`cache_state` is the live :class:`~tokenward.context.CacheAwareTrim`
    (``held``, ``cuts``, Anthropic ``breakpoints`` in the list ``get()`` returned).

    Use it wherever a memory is accepted::

        memory = TokenwardChatMemory.from_defaults(token_limit=8000, llm=llm)
        index.as_chat_engine(memory=memory)
        SimpleChatEngine.from_defaults(llm=llm, memory=memory)
        FunctionAgent(...).run(msg, memory=memory)
    """

    model: str | None = Field(default=None, description="Model whose tokenizer counts tokens.")
    tokenizer: str | None = Field(
        default=None,
        description="What tokenizer_fn is: 'tiktoken:<encoding>' or 'custom:<name>'; "
        "None = LlamaIndex's global tokenizer (or the model's, when model is set).",
    )
    keep_system: bool = Field(default=True, description="Always keep the first system message.")
    allow_partial: bool = Field(
        default=False, description="Cut the oldest message that does not fit."
    )
    start_on: Any = Field(default="user", description="Role the kept window starts on (None: any).")
    overflow: Literal["raise", "keep"] = Field(
        default="keep", description="When system + pinned alone exceed the limit."
    )
    pinned: Any = Field(default=None, description="Indices or a ChatMessage predicate always kept.")
    cache_aware: bool | str | None = Field(
        default=None,
        description="Hold the trim point across turns for the prompt cache: True, "
        "'anthropic' or 'openai' (the cache rules for breakpoints); None: trim every turn.",
    )
    low_water: float | int = Field(
        default=0.6, description="With cache_aware: where a cut goes back to (fraction or tokens)."
    )
    cache_snapshot: dict[str, Any] | None = Field(
        default=None, description="With cache_aware: the held cut point (set by get())."
    )
    _conversions: dict[int, Any] = PrivateAttr(default_factory=dict)
    _warned: bool = PrivateAttr(default=False)
    _cache: CacheAwareTrim | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "TokenwardChatMemory"

    @model_validator(mode="before")
    @classmethod
    def validate_memory(cls, values: Any) -> Any:
        """Replaces ChatMemoryBuffer's validator of the same name: same limit check, plus a
        chat store given as a dict (``model_validate``) and the tokenizer description."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        if values.get("token_limit", -1) < 1:
            raise ValueError("Token limit must be set and greater than 0.")
        store = values.get("chat_store")
        if isinstance(store, dict):
            from llama_index.core.storage.chat_store.loading import load_chat_store

            values["chat_store"] = load_chat_store(store)
        fn = values.get("tokenizer_fn")
        description = values.get("tokenizer")
        if fn is not None and fn is not get_tokenizer():
            if description is None or _tokenizer_from(description) is not None:
                values["tokenizer"] = describe_tokenizer(fn)
        elif description is not None:
            values["tokenizer_fn"] = _tokenizer_from(description) or get_tokenizer()
        else:
            values["tokenizer_fn"] = get_tokenizer()
        return values

    @model_validator(mode="after")
    def _check_cache_aware(self) -> TokenwardChatMemory:
        if self.cache_aware is not None and self.cache_aware is not False:
            self._new_cache_state()  # validates the rules and low_water
            if self.allow_partial:
                raise ConfigurationError(
                    "cache_aware keeps the oldest kept message fixed across turns; it cannot "
                    "be used with allow_partial=True"
                )
        return self

    def _new_cache_state(self) -> CacheAwareTrim:
        rules = "anthropic" if self.cache_aware is True else str(self.cache_aware)
        return CacheAwareTrim(low_water=self.low_water, rules=rules)

    @property
    def cache_state(self) -> CacheAwareTrim | None:
        """The live cache-aware state (None without ``cache_aware`` or before ``get()``)."""
        return self._cache

    def _cache_for(self, core: list[Message]) -> CacheAwareTrim | None:
        """The conversation's state, restored from ``cache_snapshot`` after loading."""
        if self.cache_aware is None or self.cache_aware is False:
            return None
        if self._cache is None:
            self._cache = self._new_cache_state()
            self._cache.restore(core, self.cache_snapshot)
        return self._cache

    def reset(self) -> None:
        """Delete the stored messages (and the cache-aware cut point)."""
        super().reset()
        self._cache = None
        self.cache_snapshot = None

    @field_serializer("pinned")
    def _serialize_pinned(self, pinned: Any) -> Any:
        if callable(pinned):
            return _PREDICATE + str(getattr(pinned, "__qualname__", type(pinned).__name__))
        return None if pinned is None else list(pinned)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle a copy of the state (LlamaIndex's ``BaseComponent.__getstate__`` deletes
        unpicklable fields from the live object). A callable that cannot be pickled is
        left out (``tokenizer_fn``: its description stays in ``tokenizer``) or replaced by
        its description (``pinned``), so the loaded memory says what it needs back."""
        state: dict[str, Any] = dict(BaseModel.__getstate__(self))
        fields = dict(state["__dict__"])
        if self.tokenizer is None:  # the global default: loading sets it again (an unpickled
            fields.pop("tokenizer_fn", None)  # copy would read as a custom tokenizer)
        for key in ("tokenizer_fn", "pinned"):
            value = fields.get(key)
            if callable(value) and not _picklable(value):
                if key == "pinned":
                    fields[key] = self._serialize_pinned(value)
                else:
                    del fields[key]
        state["__dict__"] = fields
        state["__pydantic_private__"] = {"_conversions": {}, "_warned": False, "_cache": None}
        return state

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
        cache_aware: bool | str | None = None,
        low_water: float | int = 0.6,
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
        extra: dict[str, Any] = {} if tokenizer_fn is None else {"tokenizer_fn": tokenizer_fn}
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
            cache_aware=cache_aware,
            low_water=low_water,
            **extra,
        )

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        tokenizer_fn: Callable[[str], list[Any]] | None = None,
        pinned: Iterable[int] | Callable[[ChatMessage], bool] | None = None,
        **kwargs: Any,
    ) -> TokenwardChatMemory:
        """Load from ``to_dict()``; give back a custom ``tokenizer_fn`` or ``pinned``
        predicate here (they cannot be serialized)."""
        data = dict(data)
        if tokenizer_fn is not None:
            data["tokenizer_fn"] = tokenizer_fn
        if pinned is not None:
            data["pinned"] = pinned
        memory = super().from_dict(data, **kwargs)
        assert isinstance(memory, TokenwardChatMemory)
        return memory

    @classmethod
    def from_string(
        cls,
        json_str: str,
        *,
        tokenizer_fn: Callable[[str], list[Any]] | None = None,
        pinned: Iterable[int] | Callable[[ChatMessage], bool] | None = None,
    ) -> TokenwardChatMemory:
        """Load from ``to_string()`` (see :meth:`from_dict`)."""
        return cls.from_dict(json.loads(json_str), tokenizer_fn=tokenizer_fn, pinned=pinned)

    def _settings(self) -> tuple[Callable[[str], Sequence[Any]] | None, Any]:
        """``(custom tokenizer or None, pinned)`` usable now; warns once about detached ones."""
        tokenizer_fn: Callable[[str], Sequence[Any]] | None = None
        detached = []
        if self.tokenizer is not None:
            if self.tokenizer.startswith(_CUSTOM) and self.tokenizer_fn is get_tokenizer():
                detached.append(f"tokenizer_fn ({self.tokenizer})")
            else:
                tokenizer_fn = self.tokenizer_fn
        pinned = self.pinned
        if isinstance(pinned, str):
            detached.append(f"pinned ({pinned})")
            pinned = None
        if detached and not self._warned:
            self._warned = True
            logger.warning(
                "tokenward: this TokenwardChatMemory was loaded without its %s, which cannot be "
                "serialized; counting with the default tokenizer and pinning nothing. Pass them "
                "again: TokenwardChatMemory.from_dict(data, tokenizer_fn=..., pinned=...)",
                " and ".join(detached),
            )
        return tokenizer_fn, pinned

    def get(
        self, input: str | None = None, initial_token_count: int = 0, **kwargs: Any
    ) -> list[ChatMessage]:
        """The newest history that fits ``token_limit - initial_token_count``."""
        if initial_token_count > self.token_limit:
            raise ValueError("Initial token count exceeds token limit")
        history = self.get_all()
        if not history:
            return []
        tokenizer_fn, pinned = self._settings()
        core = self._converted(history)
        budget = self.token_limit - initial_token_count
        state = self._cache_for(core)
        kept = _trim(
            core,
            budget,
            model=self.model,
            tokenizer_fn=tokenizer_fn,
            keep_system=self.keep_system,
            pinned=pinned,
            allow_partial=self.allow_partial,
            start_on=self.start_on,
            overflow=self.overflow,
            cache_aware=state,
        )
        if state is not None:
            self.cache_snapshot = state.snapshot()
        newest = history[-1]
        if (not kept or kept[-1] is not newest) and _size(
            core[-1], self.model, tokenizer_fn
        ) > budget:
            # ChatMemoryBuffer's rule: an oversized newest message is returned anyway
            system = [history[0]] if self.keep_system and core[0].role == "system" else []
            return [*system, newest] if newest is not history[0] else [newest]
        return kept

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
