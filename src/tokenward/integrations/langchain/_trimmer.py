"""HistoryTrimmer: a Runnable that trims chat history to a token budget."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import run_in_executor

from tokenward.errors import ConfigurationError
from tokenward.integrations.langchain._messages import trim_messages_compat

__all__ = ["HistoryTrimmer"]

_UNSET: Any = object()


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

    def __repr__(self) -> str:
        return (
            f"HistoryTrimmer(max_tokens={self.max_tokens}, model={self.model!r}, "
            f"strategy={self.strategy!r})"
        )

    # -- the work ------------------------------------------------------------------------------
    def trim(self, messages: Any) -> list[BaseMessage]:
        """Trim ``messages`` (list or PromptValue) and return the kept messages."""
        return list(
            trim_messages_compat(
                messages,
                max_tokens=self.max_tokens,
                token_counter=self.token_counter,
                **self.options,
            )
        )

    def _run(self, value: Any) -> Any:
        if isinstance(value, Mapping) and "messages" in value:
            return {**value, "messages": self.trim(value["messages"])}
        return self.trim(value)

    # -- Runnable ------------------------------------------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._run, input, config, run_type="prompt")

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await run_in_executor(config, self.invoke, input, config)
