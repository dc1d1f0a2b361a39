"""HistoryTrimmer: a Runnable that trims chat history to a token budget."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import run_in_executor

from tokenward.context import CacheAwareTrim, CacheRules
from tokenward.errors import ConfigurationError
from tokenward.integrations.langchain._messages import trim_messages_compat

__all__ = ["CONVERSATION_KEYS", "HistoryTrimmer"]

_UNSET: Any = object()

#: ``configurable`` entries of a run config that name a conversation, in the order they
#: are read: LangGraph's ``thread_id``, RunnableWithMessageHistory's ``session_id`` (its
#: default) and ``conversation_id`` / ``user_id`` (its documented custom factory config).
CONVERSATION_KEYS = ("thread_id", "session_id", "conversation_id", "user_id")


def conversation_key(config: Any) -> Hashable:
    """The conversation a run config (or a plain id) names; None when it names none."""
    if config is None:
        return None
    if not isinstance(config, Mapping):
        return (config,)
    configurable = config.get("configurable") or {}
    key = tuple(configurable[k] for k in CONVERSATION_KEYS if configurable.get(k) is not None)
    return key or None


class _CacheStates:
    """One :class:`CacheAwareTrim` per conversation, the least recently used dropped first."""

    def __init__(self, make: Callable[[], CacheAwareTrim], size: int) -> None:
        self.make = make
        self.size = size
        self.states: OrderedDict[Hashable, CacheAwareTrim] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable, create: bool = True) -> CacheAwareTrim | None:
        with self.lock:
            state = self.states.get(key)
            if state is not None:
                self.states.move_to_end(key)
            elif create:
                state = self.states[key] = self.make()
                while len(self.states) > self.size:
                    self.states.popitem(last=False)
            return state


def _cache_option(
    cache_aware: Any, low_water: Any, max_conversations: int
) -> CacheAwareTrim | _CacheStates | None:
    """``HistoryTrimmer``'s ``cache_aware`` as one shared state or a per-conversation store."""
    if cache_aware is None or cache_aware is False:
        if low_water is not _UNSET:
            raise ConfigurationError("low_water is used with cache_aware=...; pass both or neither")
        return None
    if isinstance(cache_aware, CacheAwareTrim):
        if low_water is not _UNSET:
            raise ConfigurationError(
                "cache_aware=CacheAwareTrim(...) already has its low_water; do not pass it again"
            )
        return cache_aware
    if cache_aware is True:
        rules: str | CacheRules = "anthropic"
    elif isinstance(cache_aware, str | CacheRules):
        rules = cache_aware
    else:
        raise ConfigurationError(
            f"cache_aware must be True, 'anthropic', 'openai', a CacheRules or a "
            f"CacheAwareTrim; got {cache_aware!r}"
        )
    lw = 0.6 if low_water is _UNSET else low_water
    CacheAwareTrim(low_water=lw, rules=rules)  # validate now, not on the first call
    if not isinstance(max_conversations, int) or max_conversations < 1:
        raise ConfigurationError(f"max_conversations must be >= 1; got {max_conversations!r}")
    return _CacheStates(lambda: CacheAwareTrim(low_water=lw, rules=rules), max_conversations)


def _window_budget(model: str, reserve_output: int | None) -> int:
    from tokenward.context import plan

    return plan(model, reserve_output).available


def _plan_budget(plan: Any, part: str) -> int:
    try:
        value = plan[part]
    except (KeyError, TypeError, IndexError):
        value = None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(
            f"plan has no integer {part!r} section (got {value!r}); pass a "
            f"tokenward.context.plan(...) result or a mapping like {{'{part}': 6000}}"
        )
    return value


class HistoryTrimmer(Runnable[Any, Any]):
    """Trims a list of messages to a token budget (``Runnable[list[BaseMessage], list[BaseMessage]]``).

    A drop-in for ``langchain_core.messages.trim_messages`` running tokenward's
    trimming (the same results for the options both have; tool-call groups are never
    split; only the messages that decide the answer are counted, each once)::

        trimmer = HistoryTrimmer(model="gpt-4o-mini", max_tokens=2000)
        chain = prompt | trimmer | model               # a ChatPromptValue works too

    The budget is ``max_tokens``, else the ``history`` section of a ``plan``
    (``tokenward.context.plan(...)`` or ``{"history": n}``), else the ``model``'s context
    window minus ``reserve_output`` (default as in ``plan``: the model's max output,
    at most a quarter of the window).
    Tokens are counted with ``token_counter`` (anything ``trim_messages`` accepts, a
    tokenward ``TokenCounter`` or a model name), default: tokenward's counter for
    ``model``.

    Input: a list of messages (or dicts / tuples LangChain converts), a ``PromptValue``,
    or a state mapping with ``"messages"`` (returned as a copy with the trimmed list,
    for message-state preprocessors). Kept messages are the original objects (ids,
    metadata, content blocks and images intact); a partially kept one is a copy.

    Options of ``trim_messages``: ``strategy``, ``allow_partial``, ``end_on``,
    ``start_on`` (default ``"human"`` for ``"last"``), ``include_system`` (default True
    for ``"last"``), ``text_splitter``. tokenward's: ``keep_tool_pairs`` (True),
    ``pinned`` (indices or predicate: always kept), ``summarizer`` (called with the
    dropped messages; its message/string replaces them), ``overflow`` (``"raise"``:
    ``ContextBudgetError`` when the system and pinned messages alone do not fit;
    ``"keep"``: return them anyway, as ``trim_messages`` does).

    Keeping the prompt cache warm (``cache_aware``): a trim point that moves every turn
    changes the prompt right after the system message every turn, so the provider's
    prompt cache never hits past it. With ``cache_aware`` the oldest kept message stays
    the same while the history from it fits ``max_tokens`` (the high-water mark); when it
    no longer fits, the history is cut once, back to ``low_water`` (a fraction of
    ``max_tokens`` or a token count, default 0.6), and holds again
    (:class:`tokenward.context.CacheAwareTrim`). Needs ``strategy="last"``, no
    ``allow_partial`` and no ``summarizer``.

    * ``cache_aware=True``, ``"anthropic"``, ``"openai"`` or a ``CacheRules``: one state per
      conversation, named by the run config's ``configurable`` ``thread_id`` (LangGraph),
      ``session_id`` (``RunnableWithMessageHistory``), ``conversation_id`` / ``user_id``
      (its custom history factory config), so one trimmer serves every conversation.
      The ``max_conversations`` most recently used states are kept (default 1024); a
      forgotten conversation starts over (one cut to low water). Calls whose config
      names no conversation share one state.
    * ``cache_aware=CacheAwareTrim(...)``: that state for every call (one conversation).

    The rules decide the Anthropic ``cache_control`` breakpoints:
    ``trimmer.cache_state(config).breakpoints`` after a call gives the positions in the
    returned list to mark (see :meth:`cache_state`).
    """

    def __init__(
        self,
        max_tokens: int | None = None,
        *,
        model: str | None = None,
        token_counter: Any = None,
        plan: Any = None,
        reserve_output: int | None = None,
        strategy: Literal["last", "first"] = "last",
        allow_partial: bool = False,
        end_on: Any = None,
        start_on: Any = _UNSET,
        include_system: bool | None = None,
        text_splitter: Callable[[str], list[str]] | Any = None,
        keep_tool_pairs: bool = True,
        pinned: Sequence[int] | Callable[[BaseMessage], bool] | None = None,
        summarizer: Callable[[list[BaseMessage]], Any] | None = None,
        overflow: Literal["raise", "keep"] = "raise",
        name: str | None = None,
        cache_aware: bool | str | CacheRules | CacheAwareTrim | None = None,
        low_water: float | int = _UNSET,
        max_conversations: int = 1024,
    ) -> None:
        if strategy not in ("last", "first"):
            raise ConfigurationError(f"strategy must be 'last' or 'first', got {strategy!r}")
        if max_tokens is None:
            if plan is not None:
                max_tokens = _plan_budget(plan, "history")
            elif model is not None:
                max_tokens = _window_budget(model, reserve_output)
            else:
                raise ConfigurationError(
                    "HistoryTrimmer needs a budget: max_tokens=N, plan=..., or model='...' "
                    "(its context window minus reserve_output)"
                )
        if max_tokens < 0:
            raise ConfigurationError(f"max_tokens must be >= 0, got {max_tokens}")
        if token_counter is None:
            if model is None:
                raise ConfigurationError(
                    "HistoryTrimmer needs token_counter=... or model='...' to count tokens"
                )
            token_counter = model
        self.max_tokens = max_tokens
        self.model = model
        self.token_counter = token_counter
        self.strategy = strategy
        self.options: dict[str, Any] = dict(
            strategy=strategy,
            allow_partial=allow_partial,
            end_on=end_on,
            start_on=("human" if strategy == "last" else None) if start_on is _UNSET else start_on,
            include_system=(strategy == "last") if include_system is None else include_system,
            text_splitter=text_splitter,
            keep_tool_pairs=keep_tool_pairs,
            pinned=pinned,
            summarizer=summarizer,
            overflow=overflow,
        )
        self.name = name or "HistoryTrimmer"
        self._set_cache(cache_aware, low_water, max_conversations)

    def _set_cache(self, cache_aware: Any, low_water: Any, max_conversations: int) -> None:
        self.cache_aware = cache_aware
        self._cache = _cache_option(cache_aware, low_water, max_conversations)
        options = self.options
        if self._cache is not None and (
            options["strategy"] != "last"
            or options["allow_partial"]
            or options["summarizer"] is not None
        ):
            raise ConfigurationError(
                "cache_aware keeps the oldest kept message fixed across turns: it needs "
                "strategy='last' and no allow_partial or summarizer"
            )

    def with_cache_aware(
        self,
        cache_aware: bool | str | CacheRules | CacheAwareTrim,
        *,
        low_water: float | int = _UNSET,
        max_conversations: int = 1024,
    ) -> HistoryTrimmer:
        """A copy of this trimmer with ``cache_aware`` (and fresh cache states)."""
        out = copy.copy(self)
        out.options = dict(self.options)
        out._set_cache(cache_aware, low_water, max_conversations)
        return out

    def __repr__(self) -> str:
        return (
            f"HistoryTrimmer(max_tokens={self.max_tokens}, model={self.model!r}, "
            f"strategy={self.strategy!r})"
        )

    # -- the work ------------------------------------------------------------------------------
    def cache_state(self, config: Any = None, *, create: bool = False) -> CacheAwareTrim | None:
        """The :class:`~tokenward.context.CacheAwareTrim` of a conversation (None without
        ``cache_aware``, or for a conversation not seen yet unless ``create``).

        ``config``: a run config (``{"configurable": {"thread_id": ...}}``) or the id
        itself (a thread or session id; when the configs name a conversation with more than
        one entry, e.g. ``user_id`` and ``conversation_id``, pass the config). After ``invoke(messages, config)``,
        ``trimmer.cache_state(config).breakpoints`` are the positions in the returned list
        to mark with Anthropic ``cache_control``; ``.held`` / ``.cuts`` tell whether the
        cut moved.
        """
        if self._cache is None or isinstance(self._cache, CacheAwareTrim):
            return self._cache
        return self._cache.get(conversation_key(config), create=create)

    def trim(self, messages: Any, config: Any = None) -> list[BaseMessage]:
        """Trim ``messages`` (list or PromptValue) and return the kept messages.

        ``config`` (a run config or a conversation id) picks the conversation's cache
        state with ``cache_aware``; it is ignored otherwise.
        """
        extra: dict[str, Any] = {}
        if self._cache is not None:
            extra["cache_aware"] = self.cache_state(config, create=True)
        return list(
            trim_messages_compat(
                messages,
                max_tokens=self.max_tokens,
                token_counter=self.token_counter,
                **self.options,
                **extra,
            )
        )

    def _run(self, value: Any, config: RunnableConfig | None = None) -> Any:
        if isinstance(value, Mapping) and "messages" in value:
            return {**value, "messages": self.trim(value["messages"], config)}
        return self.trim(value, config)

    # -- Runnable ------------------------------------------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._run, input, config, run_type="prompt")

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await run_in_executor(config, self.invoke, input, config)
