"""LangChain callback handlers that account every model call through an Accountant."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from itertools import chain
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook

from tokenward.accountant import LazyMessages
from tokenward.integrations._common import guard, log_internal_error
from tokenward.integrations.langchain._common import (
    base_url_from_start,
    dims_from_run,
    extract_result,
    logger,
    max_output_from_params,
    model_from_start,
)
from tokenward.integrations.langchain._messages import to_core

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import LLMResult

    from tokenward.accountant import Accountant, Tracker

__all__ = ["AsyncTokenwardCallbackHandler", "TokenwardCallbackHandler", "tracking"]

#: True while a TokenBudgetMiddleware accounts the model call being made: handlers skip it.
_accounted_elsewhere: ContextVar[bool] = ContextVar("tokenward_accounted_elsewhere", default=False)


class _DenialLogFilter(logging.Filter):
    """Drops LangChain's "Error in TokenwardCallbackHandler... callback" warning for denials.

    LangChain logs a warning for every exception a callback raises, even when the handler
    has ``raise_error = True`` and the exception is re-raised to the caller. A denial
    (``BudgetExceededError``, ``UnpricedModelError``, ``BudgetStoreUnavailableError``)
    reaches the caller as the exception itself; logging it as a callback error as well
    would be misleading noise. Anything else (including other handlers' errors) is left alone.
    """

    _PREFIXES = ("BudgetExceededError(", "UnpricedModelError(", "BudgetStoreUnavailableError(")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3 and args[0] == "TokenwardCallbackHandler":
            return not str(args[2]).startswith(self._PREFIXES)
        return True


logging.getLogger("langchain_core.callbacks.manager").addFilter(_DenialLogFilter())


# The guards of the callbacks without a fallback: a guard keeps no state while it runs, so
# one per step serves every call (and thread).
_CHAT_START = guard(logger, "chat model start")
_LLM_START = guard(logger, "llm start")
_NEW_TOKEN = guard(logger, "llm new token")
_TOOL_START = guard(logger, "tool start")
_flatten = chain.from_iterable


def _default_accountant() -> Accountant:
    from tokenward.accountant import get_default_accountant

    return get_default_accountant()


class TokenwardCallbackHandler(BaseCallbackHandler):
    """Accounts every LangChain chat/LLM call through a tokenward ``Accountant``.

    Attach per call (``config={"callbacks": [handler]}``), on a runnable
    (``chain.with_config(callbacks=[handler])``) or for a whole block with
    :func:`tracking`. Works in sync and async chains (LangChain calls it inline in
    both). Per model call it:

    * on start: reads the model (invocation params, serialized kwargs,
      ``ls_model_name``), the dimensions (handler defaults overridden by run
      metadata ``user_id``/``conversation_id``/``thread_id``/``session_id``/``agent``
      and tags) and calls ``accountant.preflight``. A hard budget that denies raises
      :class:`~tokenward.BudgetExceededError` out of ``invoke`` *before* the model runs;
      so does ``BudgetStoreUnavailableError`` when the budgets cannot be checked and
      their ``fail_mode`` is ``"closed"``;
    * while streaming: keeps the call's budget reservation alive past its TTL;
    * on end: hands the usage of every generation to ``accountant.settle``; with
      no usage reported (a stream without usage) it passes the output text and the
      core records an estimated event;
    * on error: ``accountant.release`` (with partial usage when there is some); a
      cancelled task or a stream closed early is recorded as ``cancelled``.

    Any other failure inside the handler is logged once per kind ("internal error in
    tokenward") and swallowed, never raised into your chain, and the call is still
    recorded. The handler keeps no per-call state (only the text of the last run id it
    converted, a cache): the accountant's call table does.

    Args:
        accountant: the Accountant to use; default: ``get_default_accountant()``.
        default_model: model name to use when a run does not say which model it is.
        **dims: default dimensions: ``user_id``, ``conversation_id``,
            ``session_id``, ``agent``, ``tags`` (a dict).
    """

    raise_error = True
    run_inline = True
    ignore_chain = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(
        self, accountant: Accountant | None = None, *, default_model: str | None = None, **dims: Any
    ) -> None:
        super().__init__()
        self.accountant = accountant if accountant is not None else _default_accountant()
        self.default_model = default_model
        self.dims: dict[str, Any] = {k: v for k, v in dims.items() if v is not None}
        #: tools run while this handler was attached, by name
        self.tool_runs: dict[str, int] = {}
        self._tool_lock = threading.Lock()
        #: the run started last and its id as text: LangChain hands the end callbacks the same
        #: UUID object, so a run that ends before another starts (most calls) converts its id
        #: once (``str(UUID)`` is Python code, the costliest step of reading the callback)
        self._started: tuple[UUID | None, str] = (None, "")

    def _run_key(self, run_id: UUID) -> str:
        """``str(run_id)``, converted once per started run (see ``_started``)."""
        started = self._started
        return started[1] if started[0] is run_id else str(run_id)

    # -- model calls -----------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            prompt = LazyMessages(list(_flatten(messages)), to_core)
            self._start("chat", serialized, prompt, run_id, parent_run_id, tags, metadata, kwargs)
        except Exception:
            # the guard's policy, applied to what the body raised: a call that raises nothing
            # (every call but a denial) runs no guard at all
            with _CHAT_START:
                raise

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        with _LLM_START:
            prompt = [{"role": "user", "content": p} for p in prompts]
            self._start(
                "completion", serialized, prompt, run_id, parent_run_id, tags, metadata, kwargs
            )

    def _start(
        self,
        kind: str,
        serialized: Mapping[str, Any] | None,
        prompt: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        if _accounted_elsewhere.get():
            return
        params = kwargs.get("invocation_params") or {}
        model = model_from_start(serialized, params, metadata) or self.default_model
        if model is None:
            log_internal_error(
                logger,
                "model name",
                ValueError(
                    "cannot tell which model a run uses (no model/model_name in its invocation "
                    "params or ls_model_name in metadata); recorded as 'unknown', or as the "
                    "model its response names. Pass default_model= to the handler"
                ),
            )
        rid = str(run_id)
        self._started = (run_id, rid)
        self.accountant.preflight(
            rid,
            model,
            messages=prompt,
            tools=params.get("tools") or None,
            max_output_tokens=max_output_from_params(params),
            dims=dims_from_run(self.dims, metadata, tags),
            parent_id=str(parent_run_id) if parent_run_id else None,
            kind=kind,
            provider=(metadata or {}).get("ls_provider"),
            base_url=base_url_from_start(serialized, params),
        )

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with _NEW_TOKEN:
            self.accountant.keepalive(self._run_key(run_id))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        rid = self._run_key(run_id)
        acc = self.accountant
        if acc.run(rid) is None:
            return  # not ours (accounted elsewhere), or already ended
        try:
            info = extract_result(response)
            usage = info.usage
            acc.settle(
                rid,
                usage,
                model=info.model,
                output_text=info.output_text if usage is None else None,
                tool_names=tuple(info.tool_names),
            )
        except Exception:
            # the guard's policy, applied to what the body raised (see on_chat_model_start);
            # its fallback records the call with estimated usage
            with guard(logger, "llm end", fallback=partial(acc.settle, rid, None)):
                raise

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        rid = self._run_key(run_id)
        if self.accountant.run(rid) is None:
            return
        with guard(
            logger, "llm error", fallback=partial(self.accountant.release, rid, error=error)
        ):
            response = kwargs.get("response")
            info = extract_result(response) if response is not None else None
            if info is not None and info.usage is None and info.output_text:
                # output was produced before the failure (a broken or early-closed stream):
                # the prompt was processed, so bill an estimate rather than nothing
                self.accountant.settle(
                    rid,
                    None,
                    model=info.model,
                    status="error",
                    output_text=info.output_text,
                    tool_names=tuple(info.tool_names),
                    error=error,
                )
                return
            self.accountant.release(
                rid,
                partial_usage=info.usage if info is not None else None,
                error=error,
                model=info.model if info is not None else None,
            )

    # -- tools -----------------------------------------------------------------------------
    def on_tool_start(
        self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        with _TOOL_START:
            name = str(kwargs.get("name") or (serialized or {}).get("name") or "tool")
            with self._tool_lock:
                self.tool_runs[name] = self.tool_runs.get(name, 0) + 1

    @property
    def pending_runs(self) -> int:
        """Model calls started but not ended yet (in the accountant's call table)."""
        return int(getattr(self.accountant, "pending_calls", 0))


#: The same handler: LangChain calls a sync handler inline in async chains too, and a
#: denial raised from it reaches ``ainvoke``/``astream`` before the model runs.
AsyncTokenwardCallbackHandler = TokenwardCallbackHandler


# One ContextVar registered once: LangChain's configure() adds the handler it holds to
# every callback manager created inside a `tracking()` block (sync, async, threads
# started by LangChain's executors, nested chains, agents and tools).
_tracking_handler: ContextVar[TokenwardCallbackHandler | None] = ContextVar(
    "tokenward_tracking_handler", default=None
)
register_configure_hook(_tracking_handler, inheritable=True)


@contextmanager
def tracking(
    accountant: Accountant | None = None,
    *,
    default_model: str | None = None,
    **dims: Any,
) -> Iterator[Tracker]:
    """Account every LangChain model call made inside the block; yields live totals.

    ::

        with tracking(accountant, user_id="u1") as t:
            chain.invoke(...)          # any depth: chains, agents, tools, threads
        print(t.calls, t.usage.total, t.cost)

    One :class:`TokenwardCallbackHandler` is attached to every run started in the
    block, however deeply nested (LangChain's ``register_configure_hook``, the
    mechanism behind ``get_usage_metadata_callback``), and ``accountant.track(**dims)``
    is entered, so the dimensions also apply to calls accounted by other adapters
    (e.g. :class:`TokenBudgetMiddleware`). Run metadata still overrides them. Nested
    blocks inherit the outer accountant and dimensions; only the innermost handler is
    attached, so nothing is counted twice, and outer trackers include inner calls.

    Yields the accountant's :class:`~tokenward.accountant.Tracker` (``calls``,
    ``errors``, ``usage``, ``cost``, ``estimated``, ``events``).
    """
    outer = _tracking_handler.get()
    given = {k: v for k, v in dims.items() if v is not None}
    if outer is not None:
        merged = {**outer.dims, **given}
        if outer.dims.get("tags") and given.get("tags"):
            merged["tags"] = {**outer.dims["tags"], **given["tags"]}
        acc = accountant if accountant is not None else outer.accountant
        default_model = default_model or outer.default_model
    else:
        merged = given
        acc = accountant if accountant is not None else _default_accountant()
    handler = TokenwardCallbackHandler(acc, default_model=default_model, **merged)
    tracker = acc.track(**given)
    token = _tracking_handler.set(handler)
    try:
        with tracker:
            yield tracker
    finally:
        _tracking_handler.reset(token)
